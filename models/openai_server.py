"""The model worker: any VQAModel behind an OpenAI-compatible API (`gap model serve`, SPEC §4.2).

Why: one process holds the model (on the GPU machine) and micro-batches the
questions of many web workers, which reach it as `GAP_MODEL=openai:<url>` —
FastChat's split of roles over the protocol every VLM server speaks. The
local backend keeps both its taint strategies: a request says *whether* to
taint (`gap_taint`), this worker's strategy says *how*, and the reply carries
the honest answer beside the served one (`models.openai_protocol`).

Routes: `GET /v1/models`, `POST /v1/chat/completions` (non-streaming), and
`GET /health` (200 while the model answers, else 503 with its last error).
Errors use vLLM's envelope; a full queue is 503 with Retry-After, which
clients retry.
"""
from __future__ import annotations

import json
import logging

from aiohttp import web

from models.base import BadImage, BadQuestion, ModelError, ModelOverloaded
from models.batching import ModelTimeout
from models.health import MonitoredModel
from models.openai_protocol import (REPLY_FIELD, ProtocolError, completion_body, error_body, model_list,
                                    parse_question)

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 32 * 1024 * 1024  # a base64 image of a few megapixels
MODEL_KEY = web.AppKey("gap_model_worker", MonitoredModel)
NAME_KEY = web.AppKey("gap_model_name", str)


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(status, message, kind), status=status, headers=headers)


async def list_models(request: web.Request) -> web.Response:
    return web.json_response(model_list(request.app[NAME_KEY], request.app[MODEL_KEY].model_id))


async def chat_completions(request: web.Request) -> web.Response:
    """One question about one image; the reply's content is the served answer, `gap` holds both."""
    try:
        body = json.loads(await request.read())
        image, question, taint, n = parse_question(body)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"the request is over {MAX_BODY_BYTES} bytes", "BadRequestError")
    except (ValueError, UnicodeDecodeError) as exc:  # ProtocolError is a ValueError; so is bad JSON
        return _error(400, str(exc) if isinstance(exc, ProtocolError) else "the body is not JSON", "BadRequestError")
    name = request.app[NAME_KEY]
    if body.get("model") not in (None, "", name):
        return _error(404, f"The model `{str(body['model'])[:100]}` does not exist.", "NotFoundError")
    if body.get("stream"):
        return _error(400, "streaming is not supported by this model worker", "BadRequestError")
    model = request.app[MODEL_KEY]
    try:
        ans = await model.answer(image, question, taint)
    except (BadImage, BadQuestion) as exc:
        return _error(400, str(exc), "BadRequestError")
    except ModelOverloaded as exc:
        return _error(503, str(exc), "ServiceUnavailableError",
                      {"Retry-After": str(max(1, int(round(exc.retry_after))))})
    except ModelTimeout as exc:
        return _error(504, str(exc), "TimeoutError")
    except ModelError as exc:
        return _error(500, str(exc) or "the model failed to answer", "InternalServerError")
    extra = {REPLY_FIELD: {"honest": ans.honest, "served": ans.served, "tainted": ans.tainted,
                           "strategy": ans.strategy, "model_id": ans.model_id}}
    return web.json_response(completion_body(name, ans.served, n, extra))


async def health(request: web.Request) -> web.Response:
    state = await request.app[MODEL_KEY].health()
    status = 200 if state.ready else 503
    return web.json_response({"model_id": request.app[MODEL_KEY].model_id, **state.as_dict()}, status=status)


def create_model_server(model: MonitoredModel, name: str) -> web.Application:
    """The worker's app; the caller owns the model's life (probe before, close after)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[MODEL_KEY] = model
    app[NAME_KEY] = name
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health", health)
    return app
