"""`gap bench api`: the game API under many concurrent players, against a bare
aiohttp JSON endpoint measured in the same run on the same machine.

Both servers run as separate processes (the real `gap serve` with the
fixed-latency fake model, and a minimal aiohttp app), so the load generator
and the server do not share an event loop. Every simulated player plays a whole
session: start, then per image one question judged Correct, one question judged
Wrong with a correction (41 API requests). The baseline sends the same number of
requests from the same number of concurrent clients. Printed: requests/s,
p50/p99 latency, errors, and the game/bare throughput ratio.

With --model-server the game is measured a second time with the model in its
own process (`gap model serve` with the same fake model, the web worker
pointed at it by GAP_MODEL=openai:<url>), and the split/in-process ratio is
printed: the cost of FastChat's split of roles (SPEC §4.2)."""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_TOKEN = "424242:bench-token"
REQUESTS_PER_PLAYER = 41


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def summary(self, elapsed: float) -> dict[str, float | int | dict]:
        n = len(self.latencies)
        return {"requests": n, "seconds": round(elapsed, 3), "rps": round(n / elapsed, 1) if elapsed else 0.0,
                "p50_ms": round(_percentile(self.latencies, 0.50) * 1000, 2),
                "p99_ms": round(_percentile(self.latencies, 0.99) * 1000, 2),
                "errors": sum(self.errors.values()), "error_kinds": self.errors}


async def _timed(rec: Recorder, session, method: str, url: str, **kw):
    start = time.perf_counter()
    try:
        async with session.request(method, url, **kw) as resp:
            body = await resp.read()
            rec.latencies.append(time.perf_counter() - start)
            if resp.status != 200:
                rec.error(f"{method} {url.split('/')[2] if url.count('/') > 1 else url} -> {resp.status}")
                return None
            return json.loads(body)
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none is fatal
        rec.latencies.append(time.perf_counter() - start)
        rec.error(type(exc).__name__)
        return None


async def _play(http, rec: Recorder, player: int) -> None:
    from webapp.auth import sign_init_data

    headers = {"Authorization": "tma " + sign_init_data(BENCH_TOKEN, {"id": 10_000_000 + player,
                                                                      "first_name": f"bench{player}"})}
    state = await _timed(rec, http, "POST", "/api/sessions", headers=headers)
    if not state:
        return
    sid = state["session_id"]
    for i in range(10):
        for step, verdict in enumerate(("correct", "wrong")):
            got = await _timed(rec, http, "POST", f"/api/sessions/{sid}/questions", headers=headers,
                               json={"request_id": f"{player}-{i}-{step}-q", "text": "How many circles are there?"})
            if not got:
                return
            body = {"request_id": f"{player}-{i}-{step}-v", "verdict": verdict,
                    "correction": "thirteen" if verdict == "wrong" else None}
            state = await _timed(rec, http, "POST", f"/api/answers/{got['answer_id']}/verdict",
                                 headers=headers, json=body)
            if not state:
                return
    if state.get("status") != "finished":
        rec.error("session not finished")


async def _bare_client(http, rec: Recorder, player: int) -> None:
    for i in range(REQUESTS_PER_PLAYER):
        await _timed(rec, http, "POST", "/bare", json={"request_id": f"{player}-{i}", "text": "How many?"})


async def _drive(base: str, players: int, work) -> tuple[Recorder, float]:
    import aiohttp

    rec = Recorder()
    connector = aiohttp.TCPConnector(limit=players, limit_per_host=players, force_close=False)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:
        start = time.perf_counter()
        await asyncio.gather(*(work(http, rec, p) for p in range(players)))
        elapsed = time.perf_counter() - start
    return rec, elapsed


async def _wait_ready(base: str, path: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with http.get(base + path) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("server did not become ready")


async def _seed(url: str, count: int = 40) -> None:
    """A pool of distinct small images, half of them reliable."""
    from PIL import Image

    from game.db import Database
    from game.images import prepare_image, store_image

    db = Database(url)
    try:
        rng = random.Random(1)
        for i in range(count):
            img = Image.new("RGB", (256, 256), tuple(rng.randrange(256) for _ in range(3)))
            img.putpixel((i, i), (0, 0, 0))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            await store_image(db, prepare_image(buf.getvalue()), pool="bench", source_name=f"bench-{i}",
                              reliable=i % 2 == 0, model_accuracy=1.0 if i % 2 == 0 else 0.3)
    finally:
        await db.dispose()


def _bare_app():
    from aiohttp import web

    async def bare(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"answer_id": "0" * 32, "answer": str(body.get("text", ""))[:10]})

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/bare", bare)
    app.router.add_get("/healthz", ok)
    return app


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process, summed over its threads.

    /proc/<pid>/stat counts in clock ticks (10 ms), too coarse for a short run
    on a fast machine (a small bench measured 0.0); the per-thread schedstat
    counts nanoseconds, so it is preferred when the kernel provides it.
    """
    try:
        ns = sum(int((task / "schedstat").read_text().split()[0])
                 for task in Path(f"/proc/{pid}/task").iterdir())
        if ns > 0:
            return ns / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def _measure(base: str, proc: subprocess.Popen, players: int, work) -> dict:
    cpu_before = _cpu_seconds(proc.pid)
    rec, elapsed = await _drive(base, players, work)
    cpu = _cpu_seconds(proc.pid) - cpu_before
    out = rec.summary(elapsed)
    out["server_cpu_s"] = round(cpu, 2)
    out["server_cpu_us_per_request"] = round(1e6 * cpu / max(1, out["requests"]), 1)
    return out


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _measure_game(env: dict[str, str], log: Path, players: int) -> dict:
    """`gap serve` with the model of `env`, every player playing a whole session."""
    port = _free_port()
    game = _start([sys.executable, "-m", "gap.cli", "serve", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_ready(base, "/healthz", game)
        out = await _measure(base, game, players, _play)
    finally:
        _stop(game)
    expected = players * REQUESTS_PER_PLAYER
    if out["requests"] != expected:
        out["error_kinds"]["incomplete sessions (requests missing)"] = expected - out["requests"]
        out["errors"] += 1
    return out


async def _measure_split(env: dict[str, str], log: Path, players: int, latency_ms: float) -> dict:
    """The same game with the model in its own process (`gap model serve`, SPEC §4.2): the web
    worker reaches it as GAP_MODEL=openai:<url>; the model worker's CPU is reported beside."""
    port = _free_port()
    worker = _start([sys.executable, "-m", "gap.cli", "model", "serve", "--model", f"fake:{latency_ms:g}",
                     "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", "/health", worker)
        cpu_before = _cpu_seconds(worker.pid)
        out = await _measure_game({**env, "GAP_MODEL": f"openai:http://127.0.0.1:{port}/v1"}, log, players)
        cpu = _cpu_seconds(worker.pid) - cpu_before
    finally:
        _stop(worker)
    out["model_worker_cpu_s"] = round(cpu, 2)
    return out


async def _bench(players: int, latency_ms: float, workdir: Path, model_server: bool = False) -> dict:
    from game.migrate import upgrade

    url = f"sqlite+aiosqlite:///{workdir / 'bench.sqlite3'}"
    await asyncio.to_thread(upgrade, url)
    await _seed(url)
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "GAP_DATABASE_URL": url, "GAP_MODEL": f"fake:{latency_ms:g}", "GAP_BOT_TOKEN": BENCH_TOKEN,
           "GAP_IMAGE_SECONDS": "3600", "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = workdir / "server.log"
    results: dict = {"players": players, "model_latency_ms": latency_ms, "cpus": os.cpu_count(),
                     "loadavg_before": os.getloadavg()[0]}

    port = _free_port()
    bare = _start([sys.executable, "-m", "lab.bench_api", "--bare-server", str(port)], env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_ready(base, "/healthz", bare)
        await _drive(base, min(players, 50), _bare_client)  # warm-up
        results["bare"] = await _measure(base, bare, players, _bare_client)
    finally:
        _stop(bare)

    results["game"] = await _measure_game(env, log, players)
    if model_server:
        results["split"] = await _measure_split(env, log, players, latency_ms)
        results["split_ratio"] = round(results["split"]["rps"] / results["game"]["rps"], 3) if results["game"]["rps"] else 0.0
    results["ratio"] = round(results["game"]["rps"] / results["bare"]["rps"], 3) if results["bare"]["rps"] else 0.0
    results["cpu_ratio"] = round(results["bare"]["server_cpu_us_per_request"]
                                 / results["game"]["server_cpu_us_per_request"], 3)
    results["loadavg_after"] = os.getloadavg()[0]
    return results


def _print(results: dict) -> None:
    print(f"players {results['players']}, model latency {results['model_latency_ms']} ms, "
          f"{results['cpus']} CPUs, load average before {results['loadavg_before']:.2f}")
    print(f"{'':6} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'server CPU us/req':>18}")
    for name in ("bare", "game"):
        r = results[name]
        print(f"{name:6} {r['requests']:>9} {r['rps']:>9.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7}"
              f" {r['server_cpu_us_per_request']:>18.1f}")
        for kind, n in r["error_kinds"].items():
            print(f"       error: {kind} x{n}")
    if "split" in results:
        r = results["split"]
        print(f"{'split':6} {r['requests']:>9} {r['rps']:>9.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7}"
              f" {r['server_cpu_us_per_request']:>18.1f}   (+ model worker {r['model_worker_cpu_s']} CPU s)")
        for kind, n in r["error_kinds"].items():
            print(f"       error: {kind} x{n}")
        print(f"split (gap model serve + GAP_MODEL=openai:) / in-process throughput: "
              f"{results['split_ratio'] * 100:.1f}%")
    print(f"game / bare throughput: {results['ratio'] * 100:.1f}% (target >= 30%); "
          f"by server CPU per request: {results['cpu_ratio'] * 100:.1f}% "
          f"(load average {results['loadavg_before']:.1f} -> {results['loadavg_after']:.1f})")


def run(args: argparse.Namespace, settings) -> int:
    """Entry point of `gap bench api`."""
    with tempfile.TemporaryDirectory(prefix="gap-bench-") as tmp:
        results = asyncio.run(_bench(args.players, args.model_latency_ms, Path(tmp),
                                     model_server=getattr(args, "model_server", False)))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    ok = all(results[side]["errors"] == 0 for side in ("bare", "game", "split") if side in results)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-server":
        from aiohttp import web

        web.run_app(_bare_app(), host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
