"""Loading a model directory's processor, with an image-only fallback when torchvision is missing.

Why: several VLM processors (Qwen2-VL, Qwen2.5-VL, SmolVLM2, LLaVA-OneVision)
bundle a video processor, and transformers builds video processors only with
torchvision — which has no build beside the pinned CPU torch. The game never
sends video (SPEC §1.1: one image per question), so when torchvision cannot be
imported such a processor is built without its video half: the family's own
processor class, with the same tokenizer, image processor (its PIL backend),
chat template and settings, minus `video_processor`. Image inputs are
byte-for-byte those of the full processor (a test compares them where
possible); a request for video would fail, and none is ever made.
"""
from __future__ import annotations

import json
import logging
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


@lru_cache(maxsize=None)
def image_only(processor_cls: type) -> type:
    """`processor_cls` without its video processor: same class behaviour, two sub-processors.

    transformers finds a processor's parts with `get_attributes()`, which here
    leaves `video_processor` out; the family's own `__init__` runs unchanged,
    with `video_processor` defaulting to None (the base class then ignores
    it). Its saved settings (image_seq_len, num_image_tokens, ...) are read
    from that `__init__`'s code, so it is reused as is, not wrapped. A class's
    own `apply_chat_template` exists only to add video defaults (SmolVLM's
    reads `video_processor.num_frames`), so the image-only class renders with
    the base one."""
    from transformers import ProcessorMixin

    init = processor_cls.__init__
    code = init.__code__
    names = code.co_varnames[1:code.co_argcount]  # after self
    defaults = dict(zip(names[len(names) - len(init.__defaults__ or ()):], init.__defaults__ or ()))
    defaults["video_processor"] = None
    argdefs = tuple(defaults.get(n) for n in names)  # every argument gets a default (None unless it had one)
    new_init = types.FunctionType(code, init.__globals__, "__init__", argdefs, init.__closure__)
    new_init.__kwdefaults__ = init.__kwdefaults__
    attributes = [a for a in processor_cls.get_attributes() if a != "video_processor"]
    return type(processor_cls.__name__, (processor_cls,), {
        "__init__": new_init, "__module__": __name__, "__doc__": f"{processor_cls.__name__} without video.",
        "get_attributes": classmethod(lambda cls: list(attributes)),
        "apply_chat_template": ProcessorMixin.apply_chat_template,
    })


def processor_class(path: Path) -> type | None:
    """The processor class a model directory declares (processor_config.json, else its model type)."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = None
    for file in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        f = path / file
        if f.exists():
            name = json.loads(f.read_text()).get("processor_class")
            if name:
                break
    if not name and (path / "config.json").exists():
        name = PROCESSOR_MAPPING_NAMES.get(json.loads((path / "config.json").read_text()).get("model_type", ""))
    return getattr(transformers, name, None) if name else None


def needs_image_only(cls: type | None) -> bool:
    """True when `cls` wants a video processor that cannot be built here."""
    return cls is not None and "video_processor" in cls.get_attributes() and not _torchvision_available()


def load_processor(path: str | Path) -> Any:
    """The directory's processor (AutoProcessor), or its image-only form when torchvision is missing."""
    from transformers import AutoProcessor

    path = Path(path)
    cls = processor_class(path)
    if needs_image_only(cls):
        log.info("torchvision is not installed: %s is loaded without its video processor (images only)",
                 cls.__name__)
        return image_only(cls).from_pretrained(path)
    return AutoProcessor.from_pretrained(path)
