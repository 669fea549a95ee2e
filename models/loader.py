"""`load_model(spec)`: the one way the product obtains a VQAModel.

`spec` is a local transformers directory (the shipped embedded model, a real
VLM, or a peft LoRA adapter directory over one) or `openai:<base url>` for an
OpenAI-compatible chat-completions endpoint with image input, or `fake:<latency_ms>`
for the fixed-latency fake used by load tests and benchmarks.
"""
from __future__ import annotations

from pathlib import Path

from models.base import ModelError, VQAModel


def load_model(spec: str, *, strategy: str = "decode", max_batch: int = 16, max_wait_ms: float = 5,
               max_queue: int = 256, timeout_s: float = 30) -> VQAModel:
    """Build the backend named by `spec` (see module docstring); ModelError when it cannot be loaded."""
    spec = str(spec).strip()
    if spec == "fake" or spec.startswith("fake:"):  # fixed-latency fake for load tests: fake:<latency_ms>
        from models.fake import FixedLatencyModel

        latency = float(spec.partition(":")[2] or 20)
        return FixedLatencyModel(latency_ms=latency, model_id=f"fake-fixed-latency-{latency:g}ms")
    if spec.startswith("openai:"):
        from models.openai_backend import OpenAIVQA

        return OpenAIVQA(spec, strategy="prompt", max_batch=max_batch, max_queue=max_queue, timeout_s=timeout_s)
    path = Path(spec).expanduser()
    if not path.is_dir() or not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
        raise ModelError(f"no model directory at {spec!r} (expected a transformers directory or openai:<url>)")
    from models.local import TransformersVQA

    return TransformersVQA(path, strategy=strategy, max_batch=max_batch, max_wait_ms=max_wait_ms,
                           max_queue=max_queue, timeout_s=timeout_s)
