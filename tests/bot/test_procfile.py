"""Deployment: `honcho start web` with the repo's Procfile brings up one process
that serves /healthz on $PORT and runs the bot (long polling against the local
fake Bot API); SIGTERM shuts it down cleanly."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.bot.conftest import PUBLIC_URL, new_user_id
from tests.bot.fake_bot_api import FakeBotAPI, message_update
from tests.conftest import TEST_BOT_TOKEN

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_honcho_starts_web_on_port_with_the_bot_and_stops_on_sigterm(tmp_path: Path):
    fake = FakeBotAPI()
    await fake.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAP_")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PORT": str(port),
        "GAP_HOST": "127.0.0.1",
        "GAP_BOT_TOKEN": TEST_BOT_TOKEN,
        "GAP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gap.sqlite3'}",
        "GAP_MODEL": "fake:5",
        "GAP_TELEGRAM_API_URL": fake.base_url,
        "GAP_PUBLIC_URL": PUBLIC_URL,
        "PYTHONUNBUFFERED": "1",
    })
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "honcho"), "-f", str(REPO / "Procfile"), "start", "web",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    output = bytearray()

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(4096):
            output.extend(chunk)

    reader = asyncio.create_task(drain())
    try:
        async with aiohttp.ClientSession() as http:
            status = None
            for _ in range(600):  # up to 60 s for migrations and start-up on a busy machine
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        status = resp.status
                        if status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, output.decode(errors="replace")
                await asyncio.sleep(0.1)
            assert status == 200, output.decode(errors="replace")
        await fake.wait_for("getMe", timeout=30)
        await fake.wait_for("getUpdates", timeout=30)  # the same process long-polls for the bot
        user = new_user_id()
        fake.queue_update(message_update(fake.next_update_id(), user, "/start"))
        reply = await fake.wait_for("sendMessage", lambda c: c.params.get("chat_id") == user, timeout=30)
        assert reply.params["reply_markup"]["inline_keyboard"][0][0]["web_app"]["url"] == PUBLIC_URL + "/"

        os.killpg(proc.pid, signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        await asyncio.wait_for(reader, 10)
        text = output.decode(errors="replace")
        assert "bot stopped" in text, text
        assert "Traceback" not in text, text
        assert TEST_BOT_TOKEN.split(":")[1] not in text  # the token never reaches the logs
        assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), text
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        reader.cancel()
        await fake.stop()
