"""The published API: an OpenAPI 3.1 description of SPEC §5.2, served at `/api/openapi.json`.

Why written out here rather than generated: the routes are thin aiohttp views
with no schema objects to introspect, and a hand-kept document is what client
generators and fuzzers read. It cannot drift silently: a test compares its
paths and methods with the routes the app registers, and a Schemathesis run
against a real server checks every response against these schemas.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from game.rules import CORRECTION_MAX, QUESTION_MAX
from game.service import REQUEST_ID_MAX


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": "malformed input (nothing is stored)",
    "401": "missing or invalid `Authorization: tma <initData>`",
    "403": "the player is banned",
    "404": "no such thing for this player",
    "409": "not allowed in the current state (already judged, finished, time is up…)",
    "413": "request body over 64 KiB",
    "429": "over an abuse limit; `Retry-After` says when to try again",
    "502": "the model could not answer",
    "503": "the game or the model is not ready, or the model is overloaded (`Retry-After`)",
}


def _responses(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for code in ("400", "401", "403", "413", "429", "503", *codes):
        out[code] = _json(_ref("Error"), ERRORS[code])
    return out


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


REQUEST_ID = {"type": "string", "minLength": 1, "maxLength": REQUEST_ID_MAX, "pattern": "^[!-~]+$",
              "description": "client-generated idempotency key (the server takes any printable text; "
                             "visible ASCII such as a UUID is safe): a retry with the same id is replayed"}
# Free text the server keeps (SPEC §1.1): no control characters and at least one visible character.
# The server is a little more lenient (it allows newlines and tabs); the description promises less.
_NOT_CONTROL = "[^\u0000-\u001f\u007f-\u009f]"
VISIBLE_TEXT = f"^{_NOT_CONTROL}*[0-9A-Za-z\u00c0-\u024f\u0400-\u04ff?!.,]{_NOT_CONTROL}*$"
NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people, in the Accept-Language language"},
                "retry_after": {"type": "integer", "minimum": 1, "description": "429 only: seconds to wait"},
            }}},
    },
    "AnswerSoFar": {
        "type": "object", "required": ["answer_id", "question", "answer", "verdict"],
        "properties": {"answer_id": {"type": "string"}, "question": {"type": "string"},
                       "answer": {"type": "string"},
                       "verdict": {"type": ["string", "null"], "enum": ["correct", "wrong", None]}},
    },
    "Image": {
        "type": "object", "required": ["index", "total", "url", "deadline_ms", "seconds_left"],
        "properties": {"index": {"type": "integer", "minimum": 0}, "total": {"type": "integer", "minimum": 1},
                       "url": {"type": "string"}, "deadline_ms": {"type": "integer"},
                       "seconds_left": {"type": "number", "minimum": 0},
                       "answers": {"type": "array", "items": _ref("AnswerSoFar")}},
    },
    "State": {
        "type": "object", "required": ["session_id", "status", "image"],
        "properties": {"session_id": {"type": "string"}, "status": {"type": "string", "enum": ["playing", "finished"]},
                       "now_ms": {"type": "integer"},
                       "image": {"oneOf": [_ref("Image"), {"type": "null"}]}},
    },
    "Answer": {
        "type": "object", "required": ["answer_id", "answer"],
        "properties": {"answer_id": {"type": "string"}, "answer": {"type": "string"}},
    },
    "Summary": {
        "type": "object", "required": ["session_id", "total_points", "images"],
        "properties": {
            "session_id": {"type": "string"}, "total_points": {"type": "integer"},
            "images": {"type": "array", "items": {
                "type": "object", "required": ["index", "tainted", "points", "answers"],
                "properties": {
                    "index": {"type": "integer"}, "tainted": {"type": "boolean"}, "points": {"type": "integer"},
                    "end_reason": NULLABLE_STRING, "finds": {"type": "integer"},
                    "answers": {"type": "array", "items": {
                        "type": "object", "required": ["answer_id", "tainted", "verdict", "points"],
                        "properties": {"answer_id": {"type": "string"}, "tainted": {"type": "boolean"},
                                       "verdict": NULLABLE_STRING, "points": {"type": "integer"},
                                       "question": {"type": "string"}, "answer": {"type": "string"},
                                       "correction": NULLABLE_STRING, "validation": NULLABLE_STRING,
                                       "bonus": {"type": "integer"}}}}}}},
        },
    },
    "LeaderboardEntry": {
        "type": "object", "required": ["rank", "name", "points", "me"],
        "properties": {"rank": {"type": "integer", "minimum": 1}, "name": {"type": "string"},
                       "points": {"type": "integer"}, "me": {"type": "boolean"}},
    },
    "Leaderboard": {
        "type": "object", "required": ["period", "players", "me"],
        "properties": {"period": {"type": "string", "enum": ["week", "all"]},
                       "players": {"type": "array", "items": _ref("LeaderboardEntry")},
                       "me": {"oneOf": [_ref("LeaderboardEntry"), {"type": "null"}]}},
    },
    "Find": {
        "type": "object", "required": ["find_id", "image", "question", "answer", "correction"],
        "properties": {"find_id": {"type": "string"},
                       "image": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
                       "question": {"type": "string"}, "answer": {"type": "string"},
                       "correction": NULLABLE_STRING},
    },
    "Vote": {
        "type": "object", "required": ["status", "find_id", "agrees"],
        "properties": {"status": {"type": "string"}, "find_id": {"type": "string"}, "agrees": {"type": "boolean"}},
    },
    # describe rounds (SPEC §3.5)
    "DescribeTask": {
        "type": "object", "required": ["task_id", "status", "now_ms", "max_chars", "image"],
        "properties": {"task_id": {"type": "string"}, "status": {"const": "describing"},
                       "now_ms": {"type": "integer"}, "max_chars": {"type": "integer", "minimum": 1},
                       "image": {"type": "object", "required": ["image_id", "url", "deadline_ms", "seconds_left"],
                                 "properties": {"image_id": {"type": "string"}, "url": {"type": "string"},
                                                "deadline_ms": {"type": "integer"},
                                                "seconds_left": {"type": "number", "minimum": 0}}}},
    },
    "DescriptionRecorded": {
        "type": "object", "required": ["status", "description_id", "seconds"],
        "properties": {"status": {"const": "recorded"}, "description_id": {"type": "string"},
                       "seconds": {"type": "number", "minimum": 0}},
    },
    "DescriptionToRate": {
        "type": "object", "required": ["description_id", "text", "image"],
        "properties": {"description_id": {"type": "string"}, "text": {"type": "string"},
                       "image": {"type": "object", "required": ["image_id", "url"],
                                 "properties": {"image_id": {"type": "string"}, "url": {"type": "string"}}}},
    },
    "RatingRecorded": {
        "type": "object", "required": ["status", "description_id", "fits"],
        "properties": {"status": {"const": "recorded"}, "description_id": {"type": "string"},
                       "fits": {"type": "boolean"}},
    },
    # preference duels (SPEC §3.4): no field tells a gold duel from the others
    "DuelSide": {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "caption duels: the picture"},
                       "text": {"type": "string", "description": "answer duels: the answer"}},
    },
    "DuelItem": {
        "type": "object",
        "required": ["item_id", "index", "total", "kind", "prompt", "left", "right", "min_seconds", "wait_ms"],
        "properties": {"item_id": {"type": "string"}, "index": {"type": "integer", "minimum": 0},
                       "total": {"type": "integer", "minimum": 1},
                       "kind": {"type": "string", "enum": ["caption", "answer"]},
                       "prompt": {"type": "string", "description": "the caption, or the question"},
                       "image_url": {**NULLABLE_STRING, "description": "answer duels: the picture asked about"},
                       "left": _ref("DuelSide"), "right": _ref("DuelSide"),
                       "min_seconds": {"type": "number", "minimum": 0},
                       "wait_ms": {"type": "integer", "minimum": 0,
                                   "description": "a choice before this is refused as too fast"}},
    },
    "DuelResult": {
        "type": "object", "required": ["points", "checks", "checks_right", "accuracy", "duels"],
        "properties": {"points": {"type": "integer"}, "checks": {"type": "integer", "minimum": 0},
                       "checks_right": {"type": "integer", "minimum": 0},
                       "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
                       "duels": {"type": "integer", "minimum": 0}},
    },
    "DuelState": {
        "type": "object", "required": ["status", "batch_id", "item", "result", "tutorial_done", "now_ms"],
        "properties": {"status": {"type": "string", "enum": ["idle", "playing", "finished", "removed"]},
                       "batch_id": NULLABLE_STRING, "now_ms": {"type": "integer"},
                       "item": {"oneOf": [_ref("DuelItem"), {"type": "null"}]},
                       "result": {"oneOf": [_ref("DuelResult"), {"type": "null"}]},
                       "tutorial_done": {"type": "boolean"},
                       "message": {"type": "string", "description": "removed only: why, for people"}},
    },
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}


def _link(paths: dict[str, Any], path: str, method: str, links: dict[str, tuple[str, dict[str, str]]]) -> None:
    """OpenAPI links from an operation's 200 response: how a client (or a stateful fuzzer)
    goes on — start → ask → judge → ask again or read the summary."""
    responses = paths[path][method]["responses"]
    responses["200"] = {**responses["200"], "links": {  # a copy: several operations share one response object
        name: {"operationId": operation, "parameters": parameters} for name, (operation, parameters) in links.items()}}


def document() -> dict[str, Any]:
    """The OpenAPI document of every `/api` route (and the image route the state links to)."""
    state = _json(_ref("State"), "the session's state: no field differs between tainted and untainted images")
    paths: dict[str, Any] = {
        "/api/sessions": {"post": {
            "operationId": "startSession", "summary": "The player's active session, created if none",
            "responses": _responses(state)}},
        "/api/sessions/current": {"get": {
            "operationId": "currentSession", "summary": "The active session's state",
            "responses": _responses(state, "404")}},
        "/api/sessions/{session_id}/questions": {"post": {
            "operationId": "askQuestion", "summary": "Ask the model about the current image",
            "parameters": [_path_param("session_id")],
            "requestBody": _body({"request_id": REQUEST_ID,
                                  "text": {"type": "string", "minLength": 1, "maxLength": QUESTION_MAX,
                                           "pattern": VISIBLE_TEXT}},
                                 ["request_id", "text"]),
            "responses": _responses(_json(_ref("Answer"), "the served answer"), "404", "409", "502")}},
        "/api/answers/{answer_id}/verdict": {"post": {
            "operationId": "giveVerdict", "summary": "Judge an answer (a Wrong verdict needs the correction)",
            "parameters": [_path_param("answer_id")],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                {"type": "object", "required": ["request_id", "verdict"],
                 "properties": {"request_id": REQUEST_ID, "verdict": {"const": "correct"}}},
                {"type": "object", "required": ["request_id", "verdict", "correction"],
                 "properties": {"request_id": REQUEST_ID, "verdict": {"const": "wrong"},
                                "correction": {"type": "string", "minLength": 1, "maxLength": CORRECTION_MAX,
                                               "pattern": VISIBLE_TEXT,
                                               "description": "the right answer: the training target"}}},
            ]}}}},
            "responses": _responses(state, "404", "409")}},
        "/api/sessions/{session_id}/summary": {"get": {
            "operationId": "sessionSummary", "summary": "The reveal: per image tainted or not, and the points",
            "parameters": [_path_param("session_id")],
            "responses": _responses(_json(_ref("Summary"), "only once the session is finished"), "404", "409")}},
        "/api/leaderboard": {"get": {
            "operationId": "leaderboard", "summary": "Players ranked by points",
            "parameters": [{"name": "period", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["week", "all"], "default": "week"}}],
            "responses": _responses(_json(_ref("Leaderboard"), "ranked players"))}},
        "/api/validations/next": {"get": {
            "operationId": "nextFind", "summary": "Another player's find to check (SPEC §3.3)",
            "responses": _responses(_json(_ref("Find"), "a find"), "404")}},
        "/api/validations/{find_id}": {"post": {
            "operationId": "validateFind", "summary": "Vote on a find (agrees = the answer is wrong)",
            "parameters": [_path_param("find_id")],
            "requestBody": _body({"request_id": REQUEST_ID, "agrees": {"type": "boolean"}},
                                 ["request_id", "agrees"]),
            "responses": _responses(_json(_ref("Vote"), "the vote, recorded once"), "404", "409")}},
        # describe rounds (SPEC §3.5) and preference duels (SPEC §3.4)
        "/api/describe": {"post": {
            "operationId": "describeTask", "summary": "The player's open describe task, or a new picture to describe",
            "responses": _responses(_json(_ref("DescribeTask"), "the task"), "404")}},
        "/api/describe/{task_id}": {"post": {
            "operationId": "describe", "summary": "Send the description of a task's picture",
            "parameters": [_path_param("task_id")],
            "requestBody": _body({"request_id": REQUEST_ID,
                                  "text": {"type": "string", "minLength": 1, "maxLength": QUESTION_MAX,
                                           "pattern": VISIBLE_TEXT}}, ["request_id", "text"]),
            "responses": _responses(_json(_ref("DescriptionRecorded"), "the description, stored once"), "404", "409")}},
        "/api/descriptions/next": {"get": {
            "operationId": "nextDescription", "summary": "Another player's description to rate",
            "responses": _responses(_json(_ref("DescriptionToRate"), "a description"), "404")}},
        "/api/descriptions/{description_id}/rating": {"post": {
            "operationId": "rateDescription", "summary": "Does the description fit its picture?",
            "parameters": [_path_param("description_id")],
            "requestBody": _body({"request_id": REQUEST_ID, "fits": {"type": "boolean"}}, ["request_id", "fits"]),
            "responses": _responses(_json(_ref("RatingRecorded"), "the rating, recorded once"), "404", "409")}},
        "/api/duels": {"post": {
            "operationId": "startDuels", "summary": "The player's open batch of duels, or a new one",
            "responses": _responses(_json(_ref("DuelState"), "the batch's state"), "404", "409")}},
        "/api/duels/current": {"get": {
            "operationId": "currentDuels", "summary": "The open batch's state",
            "responses": _responses(_json(_ref("DuelState"), "the batch's state"), "404", "409")}},
        "/api/duels/items/{item_id}/choice": {"post": {
            "operationId": "chooseDuel", "summary": "Pick a side of a duel (no ties)",
            "parameters": [_path_param("item_id")],
            "requestBody": _body({"request_id": REQUEST_ID, "choice": {"type": "string", "enum": ["left", "right"]}},
                                 ["request_id", "choice"]),
            "responses": _responses(_json(_ref("DuelState"), "the batch's state"), "404", "409")}},
        "/api/duels/tutorial": {"post": {
            "operationId": "duelTutorialDone", "summary": "The player finished the duel tutorial",
            "responses": _responses(_json({"type": "object", "required": ["tutorial_done"], "properties": {"tutorial_done": {"const": True}}}, "recorded"), "404", "409")}},
    }
    _link(paths, "/api/sessions", "post", {
        "Ask": ("askQuestion", {"session_id": "$response.body#/session_id"}),
        "Summary": ("sessionSummary", {"session_id": "$response.body#/session_id"})})
    _link(paths, "/api/sessions/{session_id}/questions", "post", {
        "Judge": ("giveVerdict", {"answer_id": "$response.body#/answer_id"})})
    _link(paths, "/api/answers/{answer_id}/verdict", "post", {
        "AskAgain": ("askQuestion", {"session_id": "$response.body#/session_id"}),
        "Summary": ("sessionSummary", {"session_id": "$response.body#/session_id"})})
    _link(paths, "/api/describe", "post", {
        "Describe": ("describe", {"task_id": "$response.body#/task_id"})})
    _link(paths, "/api/descriptions/next", "get", {
        "Rate": ("rateDescription", {"description_id": "$response.body#/description_id"})})
    _link(paths, "/api/duels", "post", {
        "Choose": ("chooseDuel", {"item_id": "$response.body#/item/item_id"})})
    for item in paths.values():
        for operation in item.values():
            operation["security"] = [{"initData": []}]
    paths["/api/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This description", "security": [],
        "responses": {"200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "GAP game API", "version": "1",
                 "description": "The JSON API of the GAP Mini App (SPEC §5.2). Errors are "
                                "`{\"error\": {\"code\", \"message\"}}`; every submit is idempotent on its "
                                "`request_id`."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"initData": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`tma <initData>`: the raw Telegram.WebApp.initData string"}},
        },
    }


async def openapi_view(request: web.Request) -> web.Response:
    """The description itself needs no auth (SPEC §5.2)."""
    return web.json_response(request.app[OPENAPI_KEY], headers={"Cache-Control": "no-cache"})


OPENAPI_KEY = web.AppKey("gap_openapi", dict)


def setup_openapi(app: web.Application) -> None:
    app[OPENAPI_KEY] = document()
    app.router.add_get("/api/openapi.json", openapi_view)
