"""An OpenAI-compatible chat-completions endpoint (vLLM, TGI, `gap model serve`) as a VQAModel.

Why: deployers with GPUs serve a real VLM behind such a server and point
GAP_MODEL at `openai:<base url>`; web workers and model workers then scale
apart (SPEC §4.2). The protocol, and GAP's two extension fields, are in
`models.openai_protocol`. How a tainted answer is obtained depends on the server:

- `gap model serve` (its `/v1/models` card is owned by "gap"): one request
  with `gap_taint`; the model worker taints by its own strategy and returns
  the honest answer beside the served one.
- any other server, `?taint=prompt` (the default): the honest request and an
  instructed one ("answer wrong but plausibly", n=3, one regeneration) are
  sent at once, so tainted and honest answers take the same time; a reply that
  reveals the instruction or equals the honest answer is refused, and then
  the honest answer is served untainted.
- `?taint=decode`: one request with `top_logprobs`; the best-scoring
  first token that is a plausible different answer is the tainted one (the
  local backend's decode strategy for one-token answers).

Servers restart and load for minutes (vLLM answers nothing until its weights
are in memory), so every request is retried with backoff on 429/503, refused
or dropped connections and per-attempt timeouts, within the answer's deadline;
the model's name is read from `/v1/models` until it is known, never guessed.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp

from models.base import BadQuestion, ModelAnswer, ModelError, ModelOverloaded
from models.batching import ModelTimeout
from models.describe import DESCRIBE_INSTRUCTION, REWRITE_INSTRUCTION, Description
from models.images import decode_image
from models.openai_protocol import (GAP_OWNER, TAINT_FIELD, ProtocolError, chat_body, error_message,
                                    first_token_alternatives, gap_reply, image_data_url, reply_texts)
from models.taint import HONEST_INSTRUCTION, TAINT_INSTRUCTION, acceptable_taint, clean_answer

log = logging.getLogger(__name__)
MAX_QUESTION_CHARS = 2000
DESCRIBE_MAX_TOKENS = 120
RETRY_STATUSES = frozenset({429, 503})
TOP_LOGPROBS = 20
DATA_URL_CACHE = 64  # PNG data URLs of recent images (a few hundred kB each at most)
STRATEGIES = ("prompt", "decode")


@dataclass(frozen=True)
class OpenAIOptions:
    """Timeouts and limits of the client (GAP_MODEL_TIMEOUT_S and GAP_OPENAI_* settings)."""

    timeout_s: float = 30.0          # an answer's deadline, every retry included
    connect_timeout_s: float = 5.0   # one connection attempt
    request_timeout_s: float = 20.0  # one HTTP request (within what is left of the deadline)
    backoff_s: float = 0.2           # first wait before a retry; doubles up to max_backoff_s
    max_backoff_s: float = 2.0
    api_key: str | None = None
    max_tokens: int = 48
    max_in_flight: int = 4096


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`openai:http://host:8000/v1?model=name` -> (base url, model name or None)."""
    base, model, _ = parse_endpoint(spec)
    return base, model


def parse_endpoint(spec: str) -> tuple[str, str | None, str]:
    """(base url, model name or None, taint strategy for plain servers) of an `openai:` spec."""
    url = spec.split(":", 1)[1] if spec.startswith("openai:") else spec
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    query = parse_qs(parts.query)
    strategy = query.get("taint", ["prompt"])[0]
    if strategy not in STRATEGIES:
        raise ValueError(f"taint={strategy!r}: expected one of {', '.join(STRATEGIES)}")
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, query.get("model", [None])[0], strategy


class _Retry(Exception):
    """One attempt failed in a way worth retrying (overload, connection, attempt timeout)."""

    def __init__(self, reason: str, retry_after: float | None = None, overloaded: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.overloaded = overloaded


class _ModelUnknown(Exception):
    """The server does not know the model name it was sent (it restarted with another model)."""


class Endpoint:
    """HTTP to one OpenAI-compatible server: retried requests within a deadline, the model's name."""

    def __init__(self, base_url: str, model_name: str | None, options: OpenAIOptions, connections: int = 256):
        self.base_url = base_url
        self.options = options
        self._given_name = model_name
        self.model_name: str | None = None
        self.is_gap = False
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._lookup = asyncio.Lock()
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ModelError("the model is shutting down")
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.options.api_key}"} if self.options.api_key else {}
            self._session = aiohttp.ClientSession(headers=headers,
                                                  connector=aiohttp.TCPConnector(limit=self._connections))
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    async def model(self, deadline: float) -> str:
        """The model's name: given in the spec, else the first of `/v1/models` — read until known."""
        if self.model_name is not None:
            return self.model_name
        async with self._lookup:
            while self.model_name is None:
                try:
                    data = await self._retrying("GET", "/models", None, deadline)
                except (ModelTimeout, ModelOverloaded):
                    raise  # not known yet: read again with the next question
                except ModelError:
                    if self._given_name is None:
                        raise
                    data = {"data": []}  # a server without /models (it answered 404): the given name, plainly
                cards = data.get("data") if isinstance(data, dict) else None
                if not isinstance(cards, list):
                    raise ModelError("the model server's /models reply is not a model list")
                card = next((c for c in cards if isinstance(c, dict)
                             and (self._given_name is None or c.get("id") == self._given_name)), None)
                if card is None and self._given_name is None:
                    raise ModelError("the model server lists no model")
                self.is_gap = bool(card and card.get("owned_by") == GAP_OWNER)
                self.model_name = self._given_name or str(card["id"])  # type: ignore[index]
            return self.model_name

    async def chat(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST /chat/completions (the model's name filled in), retried within the deadline."""
        for attempt in range(2):
            body = {**body, "model": await self.model(deadline)}
            try:
                return await self._retrying("POST", "/chat/completions", body, deadline)
            except _ModelUnknown:
                if self._given_name is not None or attempt:
                    raise ModelError(f"the model server does not serve the model {body['model']!r}") from None
                self.model_name = None  # read the name again: the server now serves another model
        raise AssertionError("unreachable")

    async def _retrying(self, method: str, path: str, body: dict | None, deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        wait = self.options.backoff_s
        while True:
            try:
                return await self._attempt(method, path, body, deadline - loop.time())
            except _Retry as failure:
                pause = failure.retry_after if failure.retry_after is not None else wait * (0.5 + random.random())
                wait = min(wait * 2, self.options.max_backoff_s)
                left = deadline - loop.time()
                if pause >= left:
                    if failure.overloaded:
                        raise ModelOverloaded(retry_after=max(1.0, round(pause, 1))) from None
                    raise ModelTimeout(f"the model server did not answer in time ({failure})") from None
                log.debug("model server %s %s: %s; retrying in %.2f s", method, path, failure, pause)
                await asyncio.sleep(pause)

    async def _attempt(self, method: str, path: str, body: dict | None, left: float) -> Any:
        if left <= 0:
            raise _Retry("the deadline passed")
        timeout = aiohttp.ClientTimeout(total=min(self.options.request_timeout_s, left),
                                        connect=self.options.connect_timeout_s)
        session = self._http()
        try:
            async with session.request(method, self.base_url + path, json=body, timeout=timeout) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                raw = await resp.read()
        except asyncio.TimeoutError:
            raise _Retry("the request timed out") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retry(f"connection failed: {type(exc).__name__}") from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:  # a body that is not JSON (a proxy's HTML error page)
            if status < 400:
                raise ModelError("the model server sent a reply that is not JSON") from None
            data = None
        if status in RETRY_STATUSES:
            raise _Retry(f"HTTP {status}", _seconds(retry_after), overloaded=True)
        if status == 404 and path == "/chat/completions" and "model" in (error_message(data) or "").lower():
            raise _ModelUnknown()
        if status >= 400:
            detail = error_message(data)
            raise ModelError(f"the model server answered HTTP {status}" + (f": {detail[:200]}" if detail else ""))
        return data


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


class OpenAIVQA:
    """VQAModel over an OpenAI-compatible `/chat/completions` endpoint with image input."""

    def __init__(self, spec: str, *, options: OpenAIOptions | None = None, max_batch: int = 16,
                 max_queue: int = 256):
        base_url, model_name, self.plain_strategy = parse_endpoint(spec)
        self.options = options or OpenAIOptions()
        self.model_id = f"openai:{base_url}" + (f"#{model_name}" if model_name else "")
        self.endpoint = Endpoint(base_url, model_name, self.options, connections=max(max_queue, 64))
        self.timeout_s = self.options.timeout_s
        # questions in flight before this web worker answers 503 itself: the model worker queues and
        # batches, and says 503 + Retry-After when full (retried here), so the local cap only bounds memory
        self.max_queue = max(max_queue, self.options.max_in_flight)
        self._slots = asyncio.Semaphore(max_batch)  # plain servers: at most this many questions in flight
        self._waiting = 0
        self._urls: collections.OrderedDict[bytes, str] = collections.OrderedDict()
        self.load_seconds = 0.0

    async def _data_url(self, image: bytes) -> str:
        """The image checked and re-encoded as PNG, cached by content: players ask several questions
        about one image and share pool images, and decoding + encoding was most of a split worker's CPU."""
        key = hashlib.blake2b(image or b"", digest_size=16).digest()
        url = self._urls.get(key)
        if url is None:
            url = await asyncio.to_thread(lambda: image_data_url(decode_image(image)))
            self._urls[key] = url
            if len(self._urls) > DATA_URL_CACHE:
                self._urls.popitem(last=False)
        else:
            self._urls.move_to_end(key)
        return url

    @property
    def strategy(self) -> str:
        return "server" if self.endpoint.is_gap else self.plain_strategy

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        started = time.perf_counter()
        q = " ".join("".join(ch if ch.isprintable() else " " for ch in (question or "")[:MAX_QUESTION_CHARS]).split())
        if not q:
            raise BadQuestion("the question is empty")
        if self._waiting >= self.max_queue:
            raise ModelOverloaded(retry_after=1.0)
        self._waiting += 1
        deadline = asyncio.get_running_loop().time() + self.options.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                data_url = await self._data_url(image)
                await self.endpoint.model(deadline)
                if self.endpoint.is_gap:
                    honest, served, tainted, strategy = await self._from_gap_server(q, data_url, taint, deadline)
                else:
                    async with self._slots:
                        honest, alternative = await self._from_plain_server(q, data_url, deadline)
                    tainted = bool(taint and alternative is not None)
                    served = alternative if tainted else honest
                    strategy = self.plain_strategy if tainted else None
        except TimeoutError:
            raise ModelTimeout(f"the model did not answer within {self.options.timeout_s:g} s") from None
        except ProtocolError as exc:
            raise ModelError(str(exc)) from None
        finally:
            self._waiting -= 1
        return ModelAnswer(honest=honest, served=served, tainted=tainted, strategy=strategy,  # type: ignore[arg-type]
                           model_id=self.model_id, latency_ms=(time.perf_counter() - started) * 1000)

    async def _from_gap_server(self, q: str, data_url: str, taint: bool, deadline: float):
        data = await self.endpoint.chat(chat_body("", q, data_url, max_tokens=self.options.max_tokens,
                                                  extra={TAINT_FIELD: bool(taint)}), deadline)
        reply = gap_reply(data)
        if reply is None:
            raise ProtocolError("the model server did not send the honest answer (is it `gap model serve`?)")
        tainted = reply["tainted"] and bool(taint)
        return (clean_answer(reply["honest"]), clean_answer(reply["served"] if tainted else reply["honest"]),
                tainted, str(reply.get("strategy") or "server") if tainted else None)

    async def _from_plain_server(self, q: str, data_url: str, deadline: float) -> tuple[str, str | None]:
        """(honest, alternative or None): both always computed, whether or not this answer is tainted."""
        if self.plain_strategy == "decode":
            data = await self._chat(HONEST_INSTRUCTION, q, data_url, deadline,
                                    logprobs=True, top_logprobs=TOP_LOGPROBS)
            honest = clean_answer((reply_texts(data) or [""])[0])
            for token, _ in first_token_alternatives(data):
                if acceptable_taint(q, honest, clean_answer(token)):
                    return honest, clean_answer(token)
            return honest, None
        honest_task = asyncio.ensure_future(self._chat(HONEST_INSTRUCTION, q, data_url, deadline))
        tainted_task = asyncio.ensure_future(self._instructed(q, data_url, honest_task, deadline))
        try:
            return await self._honest(honest_task), await tainted_task
        except BaseException:
            honest_task.cancel()
            tainted_task.cancel()
            raise

    async def _chat(self, system: str, question: str, data_url: str, deadline: float, *, n: int = 1,
                    temperature: float = 0.0, **extra: Any) -> dict[str, Any]:
        body = chat_body("", question, data_url, system=system, max_tokens=self.options.max_tokens,
                         temperature=temperature, n=n, extra=extra)
        return await self.endpoint.chat(body, deadline)

    @staticmethod
    async def _honest(task: asyncio.Future) -> str:
        return clean_answer((reply_texts(await task) or [""])[0])

    async def _instructed(self, q: str, data_url: str, honest_task: asyncio.Future, deadline: float) -> str | None:
        """An instructed wrong answer that is plausible and hides the instruction (n=3, one regeneration)."""
        samples = reply_texts(await self._chat(TAINT_INSTRUCTION, q, data_url, deadline, n=3, temperature=0.7))
        honest = await self._honest(honest_task)
        for s in samples:
            if acceptable_taint(q, honest, clean_answer(s)):
                return clean_answer(s)
        again = reply_texts(await self._chat(TAINT_INSTRUCTION, q, data_url, deadline, temperature=1.0))
        for s in again:
            if acceptable_taint(q, honest, clean_answer(s)):
                return clean_answer(s)
        return None

    async def describe(self, image: bytes) -> Description:
        """An honest description of the picture in the model's own words (SPEC §3.5)."""
        return await self._free_text(DESCRIBE_INSTRUCTION, "Describe this picture.", image)

    async def rewrite(self, text: str) -> Description:
        """A person's description rewritten by the model (text only; the study's "modified" crowd data)."""
        return await self._free_text(REWRITE_INSTRUCTION, text[:MAX_QUESTION_CHARS], None)

    async def _free_text(self, system: str, text: str, image: bytes | None) -> Description:
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.options.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                if image is not None:
                    body = chat_body("", text, await self._data_url(image), system=system,
                                     max_tokens=DESCRIBE_MAX_TOKENS)
                else:
                    body = {"model": "", "max_tokens": DESCRIBE_MAX_TOKENS, "temperature": 0.0, "n": 1,
                            "messages": [{"role": "system", "content": system},
                                         {"role": "user", "content": [{"type": "text", "text": text}]}]}
                async with self._slots:
                    data = await self.endpoint.chat(body, deadline)
        except TimeoutError:
            raise ModelTimeout(f"the model did not answer within {self.options.timeout_s:g} s") from None
        except ProtocolError as exc:
            raise ModelError(str(exc)) from None
        return Description(text=_one_line(reply_texts(data)), model_id=self.model_id,
                           compute_seconds=time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def _one_line(replies: list[str]) -> str:
    """The first reply as one clean line; an empty reply is an error, never an empty description."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in (replies[0] if replies else "")).split())
    if not text:
        raise ModelError("the model sent an empty description")
    return text
