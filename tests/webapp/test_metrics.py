"""/metrics over a real server: what a session, errors and the model's batches add up to,
behind the token or on the separate port, and the Grafana dashboard's queries."""
from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from game.service import GameConfig, GameService
from settings import EMBEDDED_MODEL_DIR, REPO_ROOT
from tests.conftest import TEST_HASH_KEY
from tests.webapp.conftest import auth_header, make_app

TOKEN = "scrape-secret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ALICE = auth_header(1111, first_name="Alice")
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "gap-dashboard.json"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def post(client, path: str, body: dict) -> aiohttp.ClientResponse:
    return await client.post(path, data=json.dumps(body), headers={**ALICE, "Content-Type": "application/json"})


async def play_session_all_wrong(client) -> list[dict]:
    """Ten questions, each judged Wrong with a correction: the session ends; returns the summary's images."""
    state = await (await client.post("/api/sessions", headers=ALICE)).json()
    sid = state["session_id"]
    for i in range(10):
        asked = await (await post(client, f"/api/sessions/{sid}/questions",
                                  {"request_id": f"q{i}", "text": "What colour is it?"})).json()
        resp = await post(client, f"/api/answers/{asked['answer_id']}/verdict",
                          {"request_id": f"v{i}", "verdict": "wrong", "correction": "a purple unicorn"})
        assert resp.status == 200, await resp.text()
    # a retried verdict is replayed, not counted again
    assert (await post(client, f"/api/answers/{asked['answer_id']}/verdict",
                       {"request_id": "v9", "verdict": "wrong", "correction": "a purple unicorn"})).status == 200
    summary = await (await client.get(f"/api/sessions/{sid}/summary", headers=ALICE)).json()
    return summary["images"]


@pytest.fixture
def token_settings(settings):
    return settings.model_copy(update={"metrics_token": TOKEN})


async def test_a_played_session_adds_up_on_metrics(service, token_settings, model):
    async with TestClient(TestServer(make_app(service, token_settings, model), host="127.0.0.1")) as client:
        images = await play_session_all_wrong(client)
        bad = await post(client, "/api/sessions/nope/questions", {"request_id": "x", "text": ""})
        assert bad.status == 400
        assert (await client.get("/api/sessions/current")).status == 401
        resp = await client.get("/metrics", headers=BEARER)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=")
        m = samples(await resp.text())

    untainted = sum(1 for image in images if not image["tainted"])
    assert untainted == 5
    assert value(m, "gap_sessions_started_total") == 1
    assert value(m, "gap_sessions_finished_total", reason="wrong") == 1
    assert value(m, "gap_sessions_finished_total", reason="timeout") == 0
    assert value(m, "gap_answers_total") == 10
    assert value(m, "gap_answer_latency_seconds_count") == 10
    assert value(m, "gap_verdicts_total", verdict="wrong") == 10
    assert value(m, "gap_verdicts_total", verdict="correct") == 0
    assert value(m, "gap_finds_total") == untainted
    assert value(m, "gap_images", pool="reliable") == 10 and value(m, "gap_images", pool="all") == 20
    route = "/api/sessions/{session_id}/questions"
    assert value(m, "gap_http_requests_total", method="POST", route=route, status="200") == 10
    assert value(m, "gap_http_requests_total", method="POST", route=route, status="400") == 1
    assert value(m, "gap_http_requests_total", method="POST", route="/api/answers/{answer_id}/verdict",
                 status="200") == 11
    assert value(m, "gap_http_request_duration_seconds_count", method="POST", route=route) == 11
    assert value(m, "gap_errors_total", code="invalid", status="400") == 1
    assert value(m, "gap_errors_total", code="unauthorized", status="401") == 1
    assert value(m, "gap_model_queue_depth") == 0  # the fixed-latency model has no queue


async def test_a_timed_out_last_image_counts_a_finished_session(service, token_settings, model, clock):
    async with TestClient(TestServer(make_app(service, token_settings, model), host="127.0.0.1")) as client:
        await client.post("/api/sessions", headers=ALICE)
        clock.advance(10 * 121)  # every image's timer runs out, one after another as the state is read
        for _ in range(10):
            state = await (await client.get("/api/sessions/current", headers=ALICE)).json()
            if state.get("status") == "finished":
                break
            clock.advance(121)
        assert state["status"] == "finished"
        m = samples(await (await client.get("/metrics", headers=BEARER)).text())
    assert value(m, "gap_sessions_finished_total", reason="timeout") == 1
    assert value(m, "gap_sessions_finished_total", reason="wrong") == 0


async def test_metrics_need_the_token(service, settings, token_settings, model):
    async with TestClient(TestServer(make_app(service, token_settings, model), host="127.0.0.1")) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"tma {TOKEN}"}):
            resp = await client.get("/metrics", headers=headers)
            assert resp.status == 401, headers
            assert (await resp.json())["error"]["code"] == "unauthorized"
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        resp = await client.get("/metrics", headers=BEARER)  # neither token nor port: not served at all
        assert resp.status == 404


async def test_metrics_on_a_separate_port(service, settings, model):
    from webapp.metrics import METRICS_ADDRESSES_KEY

    app = make_app(service, settings.model_copy(update={"metrics_port": 0}), model)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await client.post("/api/sessions", headers=ALICE)
        assert (await client.get("/metrics")).status == 404  # not on the game's port
        host, port = app[METRICS_ADDRESSES_KEY][0][:2]
        assert host == "127.0.0.1"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/metrics") as resp:
                assert resp.status == 200
                m = samples(await resp.text())
    assert value(m, "gap_sessions_started_total") == 1
    assert value(m, "gap_http_requests_total", method="POST", route="/api/sessions", status="200") == 1
    assert value(m, "gap_errors_total", code="not_found", status="404") == 1


async def test_batch_sizes_and_queue_depth_of_the_real_model(db, token_settings):
    """The shipped model behind its micro-batcher: concurrent players' questions share batches."""
    from game.images import prepare_image, store_image
    from models.loader import load_model
    from models.scenes import render_png, scene_from_seed

    for i in range(20):  # scenes the size the model crops, half of them reliable
        await store_image(db, prepare_image(render_png(scene_from_seed("pool", i, "simple"), 384)),
                          pool="test", source_name=f"scene-{i}.png", reliable=i < 10, model_accuracy=1.0)
    model = load_model(str(EMBEDDED_MODEL_DIR), max_batch=8, max_wait_ms=50, timeout_s=120)
    service = GameService(db, model, hash_key=TEST_HASH_KEY, rng=random.Random(3),
                          config=GameConfig(image_seconds=120))
    try:
        async with TestClient(TestServer(make_app(service, token_settings, model), host="127.0.0.1")) as client:
            async def ask(user: int) -> int:
                who = auth_header(5000 + user)
                state = await (await client.post("/api/sessions", headers=who)).json()
                resp = await client.post(f"/api/sessions/{state['session_id']}/questions",
                                         data=json.dumps({"request_id": "r", "text": "How many shapes?"}),
                                         headers={**who, "Content-Type": "application/json"})
                return resp.status

            assert await asyncio.gather(*(ask(u) for u in range(6))) == [200] * 6
            m = samples(await (await client.get("/metrics", headers=BEARER)).text())
    finally:
        await model.aclose()
    batches = value(m, "gap_model_batch_size_count")
    assert value(m, "gap_model_batch_size_sum") == 6
    assert 1 <= batches < 6  # at least two questions shared a batch
    assert value(m, "gap_model_batch_size_bucket", le="8.0") == batches
    assert value(m, "gap_model_queue_depth") == 0
    assert value(m, "gap_answers_total") == 6


async def test_the_grafana_dashboard_queries_metrics_that_exist(service, token_settings, model):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\b(gap_[a-z_]+)\b", expr)}
    async with TestClient(TestServer(make_app(service, token_settings, model), host="127.0.0.1")) as client:
        await play_session_all_wrong(client)
        assert (await client.get("/api/sessions/current")).status == 401  # one error, so its series exists
        exposed = {name for name, _ in samples(await (await client.get("/metrics", headers=BEARER)).text())}
    assert used and used <= exposed, used - exposed
    families = {re.sub(r"_(total|count|sum|bucket)$", "", n) for n in used}
    for wanted in ("gap_http_requests", "gap_http_request_duration_seconds", "gap_model_queue_depth",
                   "gap_model_batch_size", "gap_answer_latency_seconds", "gap_sessions_started",
                   "gap_sessions_finished", "gap_answers", "gap_verdicts", "gap_finds", "gap_errors", "gap_images"):
        assert wanted in families, wanted
