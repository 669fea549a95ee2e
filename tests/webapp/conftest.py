"""A real aiohttp server on a local port in front of a real migrated SQLite file."""
from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from settings import Settings
from tests.conftest import TEST_BOT_TOKEN
from webapp.app import create_app
from webapp.auth import sign_init_data


def auth_header(user_id: int, *, token: str = TEST_BOT_TOKEN, auth_date: int | None = None,
                first_name: str = "Tester") -> dict[str, str]:
    init = sign_init_data(token, {"id": user_id, "first_name": first_name},
                          auth_date=int(time.time()) if auth_date is None else auth_date)
    return {"Authorization": f"tma {init}"}


@pytest.fixture
def settings(db_url: str) -> Settings:
    # No bot token in the settings: the Telegram bot stays off (these tests are about
    # the HTTP API); the Mini App auth gets the token explicitly, as `gap demo` does.
    return Settings(bot_token=None, database_url=db_url, model="fake:0", init_data_max_age=3600)


def make_app(service, settings, model):
    return create_app(service, settings, model, bot_token=TEST_BOT_TOKEN)


@pytest.fixture
async def client(service, settings, model):
    app = make_app(service, settings, model)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        yield http
