"""`load_model(spec)`: the one way the product obtains a VQAModel.

`spec` is a local transformers directory (the shipped embedded model, a real
VLM, or a peft LoRA adapter directory over one) or `openai:<base url>` for an
OpenAI-compatible chat-completions endpoint with image input, or `fake:<latency_ms>`
for the fixed-latency fake used by load tests and benchmarks.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import ModelError, VQAModel

if TYPE_CHECKING:
    from models.openai_backend import OpenAIOptions

log = logging.getLogger(__name__)


def load_model(spec: str, *, strategy: str = "decode", max_batch: int = 16, max_wait_ms: float = 5,
               max_queue: int = 256, timeout_s: float = 30, openai: OpenAIOptions | None = None,
               answer_style: str = "free") -> VQAModel:
    """Build the backend named by `spec` (see module docstring); ModelError when it cannot be loaded.

    Any failure while loading (a broken directory, a processor that needs a missing package) becomes
    one ModelError naming the cause, so every command can report it in one line."""
    try:
        return _load(str(spec).strip(), strategy=strategy, max_batch=max_batch, max_wait_ms=max_wait_ms,
                     max_queue=max_queue, timeout_s=timeout_s, openai=openai,
                     answer_style=answer_style)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the caller needs one
        log.debug("loading %r failed", spec, exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(f"cannot load the model {str(spec)!r}: {type(exc).__name__}: {first}") from exc


def _load(spec: str, *, strategy: str, max_batch: int, max_wait_ms: float, max_queue: int, timeout_s: float,
          openai: OpenAIOptions | None, answer_style: str) -> VQAModel:
    if spec == "fake" or spec.startswith("fake:"):  # fixed-latency fake for load tests: fake:<latency_ms>
        from models.fake import FixedLatencyModel

        latency = float(spec.partition(":")[2] or 20)
        return FixedLatencyModel(latency_ms=latency, model_id=f"fake-fixed-latency-{latency:g}ms")
    if spec.startswith("openai:"):
        from dataclasses import replace

        from models.openai_backend import OpenAIOptions, OpenAIVQA

        options = replace(openai or OpenAIOptions(), timeout_s=timeout_s)  # the deadline is the caller's
        return OpenAIVQA(spec, options=options, max_batch=max_batch, max_queue=max_queue)
    path = Path(spec).expanduser()
    if not path.is_dir() or not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
        raise ModelError(f"no model directory at {spec!r} (expected a transformers directory or openai:<url>)")
    from models.local import TransformersVQA

    return TransformersVQA(path, strategy=strategy, max_batch=max_batch, max_wait_ms=max_wait_ms,
                           max_queue=max_queue, timeout_s=timeout_s, answer_style=answer_style)
