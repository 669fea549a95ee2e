"""initData validation: a published example, our own signatures, and every way to fail."""
from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode

import pytest

from webapp.auth import AuthError, parse_authorization, sign_init_data, validate_init_data

# The worked example of the Telegram Mini Apps community documentation
# (docs.telegram-mini-apps.com, "Init Data" → validating; also used by the @tma.js/init-data-node tests).
PUBLISHED_TOKEN = "5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8"
PUBLISHED_INIT_DATA = (
    "query_id=AAHdF6IQAAAAAN0XohDhrOrc&user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%22%2C"
    "%22last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C"
    "%22is_premium%22%3Atrue%7D&auth_date=1662771648&hash=c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2"
)
TOKEN = "111:our-own-token"


def test_published_example_validates():
    data = validate_init_data(PUBLISHED_INIT_DATA, PUBLISHED_TOKEN, max_age=60, now=1662771648 + 10)
    assert data.user_id == 279058397 and data.display_name == "Vladislav Kibenko"
    assert data.fields["query_id"] == "AAHdF6IQAAAAAN0XohDhrOrc"


def test_published_example_is_too_old_today():
    with pytest.raises(AuthError, match="expired"):
        validate_init_data(PUBLISHED_INIT_DATA, PUBLISHED_TOKEN, max_age=86400)


def test_own_signature_round_trip_with_signature_field():
    now = int(time.time())
    init = sign_init_data(TOKEN, {"id": 42, "first_name": "Zoë"}, auth_date=now, signature="abc", query_id="q")
    data = validate_init_data(init, TOKEN, max_age=60)
    assert data.user_id == 42 and data.display_name == "Zoë" and data.fields["signature"] == "abc"


@pytest.mark.parametrize("mutate", [
    lambda f: f.update(user=f["user"].replace("42", "43")),
    lambda f: f.update(auth_date=str(int(f["auth_date"]) + 1)),
    lambda f: f.update(hash="0" * 64),
    lambda f: f.pop("hash"),
    lambda f: f.update(extra="1"),
])
def test_tampering_is_refused(mutate):
    fields = dict(parse_qsl(sign_init_data(TOKEN, {"id": 42}, auth_date=int(time.time()))))
    mutate(fields)
    with pytest.raises(AuthError):
        validate_init_data(urlencode(fields), TOKEN, max_age=60)


def test_other_token_expired_and_malformed():
    now = int(time.time())
    with pytest.raises(AuthError, match="signature"):
        validate_init_data(sign_init_data("222:other", {"id": 1}, auth_date=now), TOKEN, max_age=60)
    with pytest.raises(AuthError, match="expired"):
        validate_init_data(sign_init_data(TOKEN, {"id": 1}, auth_date=now - 61), TOKEN, max_age=60)
    with pytest.raises(AuthError):
        validate_init_data(sign_init_data(TOKEN, {"id": 1}, auth_date=now + 3600), TOKEN, max_age=60)
    with pytest.raises(AuthError, match="user"):
        validate_init_data(sign_init_data(TOKEN, {"name": "no id"}, auth_date=now), TOKEN, max_age=60)
    for junk in ("", "garbage", "a=1&a=2&hash=x", "%%%"):
        with pytest.raises(AuthError):
            validate_init_data(junk, TOKEN, max_age=60)


def test_authorization_header():
    assert parse_authorization("tma abc=1") == "abc=1"
    for bad in (None, "", "Bearer x", "tma ", "tma"):
        with pytest.raises(AuthError):
            parse_authorization(bad)
