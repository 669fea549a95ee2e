"""The published API description: served without auth, a valid OpenAPI 3 document, and in
step with the routes the app registers (every /api route and method, nothing more)."""
from __future__ import annotations

import schemathesis

from webapp.openapi import document


def api_routes(app) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method != "HEAD":
            out.add((route.method.lower(), path))
    return out


async def test_the_description_matches_the_routes(client, settings):
    """Against the app the composition root builds (duels included), not only the core API."""
    from gap.app import COMPONENTS_KEY, build_app
    from models.fake import FixedLatencyModel
    from tests.conftest import TEST_BOT_TOKEN

    resp = await client.get("/api/openapi.json")  # no Authorization header
    assert resp.status == 200
    served = await resp.json()
    assert served == document()
    described = {(method, path) for path, item in served["paths"].items() for method in item}
    from pydantic import SecretStr

    app = await build_app(settings.model_copy(update={"bot_token": SecretStr(TEST_BOT_TOKEN), "bot_enabled": False}),
                          model=FixedLatencyModel(latency_ms=0))
    try:
        assert described == api_routes(app)
    finally:
        await app[COMPONENTS_KEY].aclose()
    assert len(described) >= 17


def test_the_description_is_valid_openapi():
    schema = schemathesis.openapi.from_dict(document())  # validates against the OpenAPI 3.1 meta-schema
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/sessions", "POST /api/answers/{answer_id}/verdict"}
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status != "200":  # every error is the one documented shape
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (method, path, status)
