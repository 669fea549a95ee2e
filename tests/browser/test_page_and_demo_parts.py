"""The server side of the Mini App page and the demo's helpers, without a browser:
headers and asset versioning over real HTTP (aiohttp test server), the template's
escaping of configuration, the demo's token file and signed URL."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from pathlib import Path
from types import SimpleNamespace
from urllib.error import HTTPError
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.request import urlopen

import pytest
from aiohttp import web
from pydantic import SecretStr

from gap.commands import demo
from webapp import page
from webapp.auth import validate_init_data


def _settings(**kw):
    base = {"image_seconds": 45.0, "false_alarm_penalty": 10, "bot_token": None,
            "database_url": "sqlite+aiosqlite:///gap.sqlite3"}
    base.update(kw)
    return SimpleNamespace(**base)


class PageServer:
    """The page's routes on a real aiohttp server (own thread and event loop: the
    browser tests' Playwright already runs a loop in the main thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        page.setup(app, _settings())
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def get(self, path: str) -> tuple[int, dict, bytes]:
        try:
            with urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server():
    running = PageServer()
    yield running
    running.close()


def test_index_is_no_cache_with_a_strict_csp(server):
    status, headers, body = server.get("/")
    assert status == 200
    assert headers["Cache-Control"] == "no-cache"
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self' https://telegram.org" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    html = body.decode()
    assert "<script>" not in html                     # no inline script at all
    assert 'src="https://telegram.org/js/telegram-web-app.js"' in html


def test_static_assets_are_hashed_and_immutable(server):
    html = server.get("/")[2].decode()
    assets = page.load_static_assets()
    for name in ("app.js", "app.css"):
        url = assets[name].url
        assert url in html
        status, headers, body = server.get(url)
        assert status == 200
        assert "immutable" in headers["Cache-Control"]
        assert body == (page.STATIC_DIR / name).read_bytes()
    status, headers, _ = server.get("/static/0000000000000000/app.js")   # an old version: served, not cached
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    assert server.get(f"/static/{assets['app.js'].digest}/nope.js")[0] == 404


def test_config_reaches_the_page_as_escaped_data(monkeypatch):
    monkeypatch.setattr(page, "example_questions", lambda: ['He said "hi" & <b>left</b>'])
    html = page.render_index(_settings(), page.load_static_assets())
    attr = html.split('data-config="', 1)[1].split('"', 1)[0]
    assert "<b>" not in attr and "&lt;b&gt;" in attr
    import html as htmllib

    config = json.loads(htmllib.unescape(attr))
    assert config["examples"] == ['He said "hi" & <b>left</b>']
    assert config["imageSeconds"] == 45.0 and config["maxQuestion"] == 300 and config["maxCorrection"] == 200


def test_example_questions_come_from_the_model_area():
    from models.scenes import example_questions

    assert page.example_questions() == example_questions()[:6]


def test_demo_token_is_created_once_private_and_reused(tmp_path: Path):
    settings = _settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/db/gap.sqlite3")
    token, source = demo.demo_bot_token(settings)
    path = tmp_path / "db" / demo.TOKEN_FILE_NAME
    assert source == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    digits, _, secret = token.partition(":")
    assert digits.isdigit() and len(secret) >= 30
    assert demo.demo_bot_token(settings) == (token, source)


def test_gap_bot_token_wins_over_the_local_file(tmp_path: Path):
    settings = _settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/gap.sqlite3",
                         bot_token=SecretStr("42:real-token"))
    assert demo.demo_bot_token(settings) == ("42:real-token", "GAP_BOT_TOKEN")
    assert not (tmp_path / demo.TOKEN_FILE_NAME).exists()


def test_demo_url_carries_init_data_the_server_accepts():
    from webapp.auth import sign_init_data

    token = "123:abc"
    url = demo.demo_url("127.0.0.1", 8080, sign_init_data(token, demo.DEMO_USER))
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port == 8080 and parts.path == "/"
    init = parse_qs(parts.fragment)["tgWebAppData"][0]
    data = validate_init_data(init, token, max_age=60)
    assert data.user_id == demo.DEMO_USER["id"]
    assert unquote(parts.fragment).count("hash=") == 1


def test_demo_listens_on_loopback_only(fast_server):
    """`gap demo` binds 127.0.0.1: the kernel's socket table shows no wildcard listener."""
    port = int(fast_server.base_url.rsplit(":", 1)[1])
    listeners = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:       # 0A = LISTEN
                listeners.append(address)
    assert listeners == ["0100007F"], listeners                   # 127.0.0.1, little-endian hex


def test_demo_makes_a_local_token_and_its_url_passes_the_production_auth(tmp_path: Path):
    """Without GAP_BOT_TOKEN: a private token file next to the database; the printed
    URL's initData is accepted by the API (404 = authenticated, no session yet);
    Ctrl-C stops the demo cleanly."""
    from browser_support import start_demo, stop

    server = start_demo(tmp_path, model="fake:30", image_seconds=60, seed_images=24, bot_token=None)
    try:
        token_file = tmp_path / demo.TOKEN_FILE_NAME
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        init = parse_qs(urlsplit(server.demo_url).fragment)["tgWebAppData"][0]
        validate_init_data(init, token_file.read_text().strip(), max_age=600)
        status, body = server.api("GET", "/api/sessions/current", init)
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body = server.api("GET", "/api/sessions/current", init.replace("Demo", "Evil"))
        assert status == 401
        assert token_file.read_text().strip() not in server.log_path.read_text()   # never logged
    finally:
        code = stop(server)
    assert code == 0
    assert "gap demo: stopping" in server.log_path.read_text()
