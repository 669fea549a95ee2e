"""The OpenAI chat-completions protocol as GAP's web workers and model workers speak it (SPEC §4.2).

Why one module: the client (`models.openai_backend`) and the project's own
model worker (`models.openai_server`, `gap model serve`) must agree on every
field, and both must stay plain OpenAI for everything else (vLLM, TGI, the
`openai` Python client).

A question is one chat completion: a user message holding the image as a
`data:` URL (`image_url` part) and the question (`text` part). GAP adds two
fields, which other servers ignore (vLLM logs and drops unknown fields):

- request `"gap_taint": true|false` — *whether* this answer is to be tainted
  (the game decides, SPEC §1.2). The model worker decides *how* (its
  `--strategy`), and always computes the honest answer too, so a tainted
  answer takes as long as an honest one.
- response `"gap": {"honest", "served", "tainted", "strategy", "model_id"}` —
  the honest answer travels with the served one (the game stores both);
  `choices[0].message.content` is the served answer, so plain clients work.

A model worker announces itself in `/v1/models` with `"owned_by": "gap"`;
the client sends `gap_taint` only to such a server, and taints by
instruction or by log-probabilities through the plain protocol elsewhere.
"""
from __future__ import annotations

import base64
import binascii
import io
import time
import uuid
from typing import Any

GAP_OWNER = "gap"
TAINT_FIELD = "gap_taint"
REPLY_FIELD = "gap"
DATA_URL_PREFIX = "data:"


class ProtocolError(ValueError):
    """A request or reply that does not follow the protocol; the message is safe to show."""


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_data_url(image) -> str:
    """A PIL image as a PNG `data:` URL (lossless: the model sees the pixels the player sees)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return png_data_url(buf.getvalue())


def chat_body(model: str, question: str, data_url: str, *, system: str | None = None, max_tokens: int = 48,
              temperature: float = 0.0, n: int = 1, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat-completions request for one question about one image."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                                 {"type": "text", "text": question}]})
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature, "n": n,
            **(extra or {})}


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """vLLM's error envelope: `{"error": {"message", "type", "param", "code"}}`, code = the HTTP status."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def error_message(data: Any) -> str | None:
    """The message of an error reply, in vLLM's current (`{"error": {...}}`) or older flat shape."""
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
        if isinstance(data.get("message"), str):
            return data["message"]
    return None


def reply_texts(data: Any) -> list[str]:
    """The choices' message contents, in order (None content, as for a refusal, reads as empty)."""
    try:
        return [str(c["message"].get("content") or "") for c in data["choices"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError("the model server sent an unexpected reply") from exc


def first_token_alternatives(data: Any) -> list[tuple[str, float]]:
    """(token, logprob) of the first choice's first position, best first (needs `top_logprobs`)."""
    try:
        content = data["choices"][0]["logprobs"]["content"]
        top = content[0]["top_logprobs"] if content else []
        pairs = [(str(t["token"]), float(t["logprob"])) for t in top]
    except (KeyError, TypeError, IndexError, ValueError):
        return []
    return sorted(pairs, key=lambda p: p[1], reverse=True)


def gap_reply(data: Any) -> dict[str, Any] | None:
    """The `gap` field of a model worker's reply, checked; None when absent."""
    reply = data.get(REPLY_FIELD) if isinstance(data, dict) else None
    if reply is None:
        return None
    if not (isinstance(reply, dict) and isinstance(reply.get("honest"), str) and isinstance(reply.get("served"), str)
            and isinstance(reply.get("tainted"), bool)):
        raise ProtocolError("the model server sent an unexpected reply")
    return reply


# ---------------------------------------------------------------------------------------------- server side
def parse_question(body: Any) -> tuple[bytes, str, bool, int]:
    """(image bytes, question, taint, n) from a chat-completions request body.

    Only the last user message counts; its image must be a base64 `data:` URL (a model worker never
    fetches URLs from the network), its text parts are joined into the question."""
    if not isinstance(body, dict):
        raise ProtocolError("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProtocolError("'messages' must be a non-empty list")
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    if user is None:
        raise ProtocolError("no user message")
    content = user.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ProtocolError("the user message's content must be text or a list of parts")
    texts, images = [], []
    for part in parts:
        if not isinstance(part, dict):
            raise ProtocolError("each content part must be an object")
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            url = part.get("image_url", {}).get("url") if isinstance(part.get("image_url"), dict) else None
            images.append(_decode_data_url(url))
        else:
            raise ProtocolError(f"unsupported content part {str(part.get('type'))[:40]!r}")
    if len(images) != 1:
        raise ProtocolError("the user message must hold exactly one image")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
        raise ProtocolError("'n' must be an integer from 1 to 8")
    taint = body.get(TAINT_FIELD, False)
    if not isinstance(taint, bool):
        raise ProtocolError(f"'{TAINT_FIELD}' must be true or false")
    return images[0], " ".join(texts), taint, n


def _decode_data_url(url: Any) -> bytes:
    if not isinstance(url, str) or not url.startswith(DATA_URL_PREFIX) or ";base64," not in url[:100]:
        raise ProtocolError("images must be base64 data: URLs")
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("the image's base64 is malformed") from exc


def completion_body(model: str, served: str, n: int, extra: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` reply in vLLM's shape; every choice carries the served answer."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": served, "tool_calls": []},
                         "logprobs": None, "finish_reason": "stop", "stop_reason": None} for i in range(n)],
            "usage": None, **extra}


def model_list(model: str, model_id: str) -> dict[str, Any]:
    """`/v1/models` in vLLM's shape, owned by "gap" so that clients know the extension fields work."""
    return {"object": "list", "data": [{"id": model, "object": "model", "created": int(time.time()),
                                        "owned_by": GAP_OWNER, "root": model_id, "parent": None,
                                        "permission": []}]}
