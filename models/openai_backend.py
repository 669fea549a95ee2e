"""An OpenAI-compatible chat-completions endpoint (vLLM, TGI, ...) as a VQAModel.

Why: deployers with GPUs serve a real VLM behind such a server and point
GAP_MODEL at `openai:<base url>`. The image travels as a data: URL. Every
question sends both the honest request and the instructed ("prompt" strategy)
request at once, so tainted and honest answers take the same time; a tainted
reply that reveals the instruction or equals the honest answer is replaced by
another sample (n=3 per request, one regeneration), else the honest answer is
served untainted.
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp

from models.base import ModelAnswer, ModelError, ModelOverloaded
from models.batching import ModelTimeout
from models.describe import DESCRIBE_INSTRUCTION, REWRITE_INSTRUCTION, Description
from models.images import decode_image
from models.taint import HONEST_INSTRUCTION, TAINT_INSTRUCTION, acceptable_taint, clean_answer

MAX_QUESTION_CHARS = 2000
DESCRIBE_MAX_TOKENS = 120


def _one_line(replies: list[str]) -> str:
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in (replies[0] if replies else "")).split())
    if not text:
        raise ModelError("the model sent an empty description")
    return text


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`openai:http://host:8000/v1?model=name` -> (base url, model name or None)."""
    url = spec.split(":", 1)[1] if spec.startswith("openai:") else spec
    parts = urlsplit(url)
    model = parse_qs(parts.query).get("model", [None])[0]
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return base, model


class OpenAIVQA:
    """VQAModel over an OpenAI-compatible `/chat/completions` endpoint with image input."""

    def __init__(self, spec: str, *, strategy: str = "prompt", max_batch: int = 16, max_queue: int = 256,
                 timeout_s: float = 30.0, api_key: str | None = None, max_tokens: int = 48):
        self.base_url, self.model_name = parse_spec(spec)
        self.model_id = f"openai:{self.base_url}" + (f"#{self.model_name}" if self.model_name else "")
        self.strategy = "prompt"  # an endpoint cannot be constrained token by token; the instruction does it
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.max_tokens = max_tokens
        self._api_key = api_key or os.environ.get("GAP_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._slots = asyncio.Semaphore(max_batch)
        self._waiting = 0
        self._session: aiohttp.ClientSession | None = None
        self.load_seconds = 0.0

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def _model(self) -> str:
        if self.model_name is None:
            try:
                async with (await self._http()).get(f"{self.base_url}/models",
                                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    data = await resp.json(content_type=None)
                    self.model_name = data["data"][0]["id"]
            except Exception:
                self.model_name = "default"
        return self.model_name

    async def _chat(self, system: str, question: str, data_url: str | None, n: int = 1,
                    temperature: float = 0.0, max_tokens: int | None = None) -> list[str]:
        content: list[dict] = [{"type": "text", "text": question}]
        if data_url is not None:
            content.insert(0, {"type": "image_url", "image_url": {"url": data_url}})
        body = {
            "model": await self._model(), "max_tokens": max_tokens or self.max_tokens, "temperature": temperature,
            "n": n, "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
        }
        session = await self._http()
        try:
            async with session.post(f"{self.base_url}/chat/completions", json=body) as resp:
                if resp.status == 429 or resp.status == 503:
                    raise ModelOverloaded(retry_after=float(resp.headers.get("Retry-After", "1") or 1))
                if resp.status >= 400:
                    raise ModelError(f"the model server answered HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise ModelError("the model server could not be reached") from exc
        try:
            return [str(c["message"]["content"] or "") for c in data["choices"]]
        except (KeyError, TypeError, IndexError) as exc:
            raise ModelError("the model server sent an unexpected reply") from exc

    @staticmethod
    def _data_url(image: bytes) -> str:
        img = decode_image(image)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    async def _tainted(self, question: str, data_url: str, honest_task: asyncio.Task) -> str | None:
        samples = await self._chat(TAINT_INSTRUCTION, question, data_url, n=3, temperature=0.7)
        honest = await honest_task
        for s in samples:
            if acceptable_taint(question, honest, clean_answer(s)):
                return clean_answer(s)
        again = await self._chat(TAINT_INSTRUCTION, question, data_url, n=1, temperature=1.0)
        for s in again:
            if acceptable_taint(question, honest, clean_answer(s)):
                return clean_answer(s)
        return None

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        started = time.perf_counter()
        q = " ".join("".join(ch if ch.isprintable() else " " for ch in (question or "")[:MAX_QUESTION_CHARS]).split())
        if not q:
            raise ModelError("the question is empty")
        if self._waiting >= self.max_queue:
            raise ModelOverloaded(retry_after=1.0)
        self._waiting += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                data_url = await asyncio.to_thread(self._data_url, image)
                async with self._slots:
                    honest_task = asyncio.create_task(self._chat(HONEST_INSTRUCTION, q, data_url))
                    # both requests always run: a tainted answer costs the same time as an honest one
                    honest_first = asyncio.ensure_future(self._first(honest_task))
                    tainted_task = asyncio.create_task(self._tainted(q, data_url, honest_first))
                    try:
                        honest = await honest_first
                        tainted_text = await tainted_task
                    except BaseException:
                        honest_task.cancel()
                        tainted_task.cancel()
                        raise
        except TimeoutError:
            raise ModelTimeout(f"the model did not answer within {self.timeout_s:g} s") from None
        finally:
            self._waiting -= 1
        served, tainted = honest, False
        if taint and tainted_text is not None:
            served, tainted = tainted_text, True
        return ModelAnswer(honest=honest, served=served, tainted=tainted, strategy="prompt" if tainted else None,
                           model_id=self.model_id, latency_ms=(time.perf_counter() - started) * 1000)

    async def describe(self, image: bytes) -> Description:
        """An honest description of the picture in the model's own words (SPEC §3.5)."""
        started = time.perf_counter()
        data_url = await asyncio.to_thread(self._data_url, image)
        async with self._slots, asyncio.timeout(self.timeout_s):
            replies = await self._chat(DESCRIBE_INSTRUCTION, "Describe this picture.", data_url,
                                       max_tokens=DESCRIBE_MAX_TOKENS)
        return Description(text=_one_line(replies), model_id=self.model_id,
                           compute_seconds=time.perf_counter() - started)

    async def rewrite(self, text: str) -> Description:
        """A person's description rewritten by the model (text only; the study's "modified" crowd data)."""
        started = time.perf_counter()
        async with self._slots, asyncio.timeout(self.timeout_s):
            replies = await self._chat(REWRITE_INSTRUCTION, text[:MAX_QUESTION_CHARS], None,
                                       max_tokens=DESCRIBE_MAX_TOKENS)
        return Description(text=_one_line(replies), model_id=self.model_id,
                           compute_seconds=time.perf_counter() - started)

    @staticmethod
    async def _first(task: asyncio.Task) -> str:
        replies = await task
        return clean_answer(replies[0] if replies else "")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
