"""How VLM families differ, each difference in one adapter chosen by what the processor declares.

Why: SPEC §4.2 — any popular VLM family transformers loads works as a model
directory. The families share one serving path (models.local); they differ in
small ways, and each way lives here, decided once at load time from the
processor's own attributes rather than tested again per request:

- the prompt: a chat template when the processor has one (SmolVLM, Qwen-VL,
  LLaVA, Gemma3, ...), else the family's task prefix before the question
  (PaliGemma: "answer en <question>"; its processor adds the image tokens);
- the images' pre-sizing: a processor that resizes to a shortest edge with
  bicubic resampling (CLIP-style: LLaVA-1.5, the embedded model), to a
  pixel budget in whole patches (Qwen2-VL's `smart_resize`) or to one fixed
  size (SigLIP-style: PaliGemma, Gemma 3) gets that resize
  done once per decoded image, up *or* down — an image smaller than the crop
  is enlarged exactly as the processor would, never refused — and the
  processor's own resize is then a copy (players ask several questions about
  one image; resizing was the largest cost of a tiny Qwen2-VL batch);
- the fast input path: only a LlavaProcessor over a plain CLIP processor
  (models.fast_inputs); every other family gets its processor with the
  image half memoised per image (models.image_memo), where a load-time probe
  shows the batches are the processor's own;
- processor outputs that are not generation inputs (PaliGemma returns
  `labels`).

What every family shares is not an adapter field: images always go to the
processor as one list per sample (Gemma3 and SmolVLM2 require it; every
other family accepts it), and slivers are padded to a bounded aspect ratio
(Qwen-VL refuses beyond 200:1, and a shortest-edge resize of a 1024x2 image
would make a 170,000-pixel-long one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from PIL import Image

from models.fast_inputs import FastClipInputs
from models.image_memo import memoised_processor

MAX_ASPECT = 8.0  # longer side : shorter side, after padding
TASK_PREFIXES = {"PaliGemmaProcessor": "answer en "}  # template-less processors' documented VQA prefix
NOT_MODEL_INPUTS = frozenset({"labels"})


class ChatPrompt:
    """The processor's chat template around one image and the question.

    Rendering the jinja template cost ~30 µs per question, a visible share of a
    tiny model's batch, so when the template just wraps the question (checked
    on two probes) the prompt is prefix + question + suffix; any other
    template is rendered each time."""

    def __init__(self, processor: Any):
        self.processor = processor
        self._parts: tuple[str, ...] | None = None

    def render(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def __call__(self, question: str) -> str:
        if self._parts is None:
            probe = "\x00question\x00"
            prefix, sep, suffix = self.render(probe).partition(probe)
            other = "another probe"
            wraps = bool(sep) and self.render(other) == prefix + other + suffix
            self._parts = (prefix, suffix) if wraps else ()
        if self._parts:
            return self._parts[0] + question + self._parts[1]
        return self.render(question)


@dataclass(frozen=True)
class PrefixPrompt:
    """A template-less processor's prompt: the family's task prefix, then the question."""

    prefix: str = ""

    def render(self, question: str) -> str:
        return self.prefix + question

    def __call__(self, question: str) -> str:
        return self.prefix + question


def _shortest_edge(processor: Any) -> int | None:
    """The edge of a CLIP-style shortest-edge bicubic resize, when the image processor declares one."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    edge = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
    if not edge or size_has_other_keys(size) or not getattr(ip, "do_resize", True):
        return None
    if int(getattr(ip, "resample", 3)) != int(Image.BICUBIC):
        return None
    return int(edge)


def size_has_other_keys(size: Any) -> bool:
    """Qwen-VL's size also has `shortest_edge` — a pixel count, next to `longest_edge`; not an edge."""
    keys = set(size) if isinstance(size, dict) else {k for k in ("longest_edge", "height", "width")
                                                     if getattr(size, k, None)}
    return bool(keys - {"shortest_edge"})


def pad_to_aspect(img: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """`img` centred on a canvas of its mean colour, so that no side is over `max_aspect` times the other."""
    w, h = img.size
    if max(w, h) <= max_aspect * min(w, h):
        return img
    new = (w, max(h, int(round(w / max_aspect)))) if w > h else (max(w, int(round(h / max_aspect))), h)
    mean = img.resize((1, 1), Image.BOX).getpixel((0, 0))  # an int or a tuple, as the mode has it
    canvas = Image.new(img.mode, new, mean)
    canvas.paste(img, ((new[0] - w) // 2, (new[1] - h) // 2))
    return canvas


def _pixel_budget(processor: Any) -> Callable[[int, int], tuple[int, int]] | None:
    """(w, h) -> the size Qwen2-VL-style processors resize to (whole merged patches within a pixel budget)."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    if not type(ip).__name__.startswith("Qwen2VLImageProcessor") or not getattr(ip, "do_resize", True):
        return None
    lo, hi = (size.get("shortest_edge"), size.get("longest_edge")) if isinstance(size, dict) else (
        getattr(size, "shortest_edge", None), getattr(size, "longest_edge", None))
    if not lo or not hi or int(getattr(ip, "resample", 3)) != int(Image.BICUBIC):
        return None
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    factor = int(ip.patch_size) * int(ip.merge_size)
    return lambda w, h: tuple(reversed(smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)))


def _fixed_size(processor: Any) -> tuple[tuple[int, int], int] | None:
    """((w, h), resample) of a processor that resizes every image to one size (SigLIP: PaliGemma, Gemma 3)."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    h, w = (size.get("height"), size.get("width")) if isinstance(size, dict) else (
        getattr(size, "height", None), getattr(size, "width", None))
    if not h or not w or not getattr(ip, "do_resize", True) or getattr(ip, "do_center_crop", False):
        return None
    if getattr(ip, "image_grid_pinpoints", None) or getattr(ip, "do_pan_and_scan", False):
        return None  # several crops per image (LLaVA-OneVision / NeXT, Gemma 3 pan and scan)
    return (int(w), int(h)), int(getattr(ip, "resample", Image.BICUBIC))


@dataclass
class FamilyAdapter:
    """One family's small differences (module docstring); `for_processor` picks them."""

    name: str
    prompt: ChatPrompt | PrefixPrompt
    shortest_edge: int | None = None
    pixel_budget: Callable[[int, int], tuple[int, int]] | None = None
    fixed_size: tuple[tuple[int, int], int] | None = None
    fast_inputs: FastClipInputs | None = None
    drop: frozenset[str] = field(default_factory=frozenset)
    memo: Any | None = None  # the processor with its image half memoised per image (models.image_memo)

    @classmethod
    def for_processor(cls, processor: Any) -> "FamilyAdapter":
        name = type(processor).__name__
        if getattr(processor, "chat_template", None):
            prompt: ChatPrompt | PrefixPrompt = ChatPrompt(processor)
        else:
            prompt = PrefixPrompt(TASK_PREFIXES.get(name, ""))
        adapter = cls(name=name, prompt=prompt, shortest_edge=_shortest_edge(processor),
                      pixel_budget=_pixel_budget(processor), fixed_size=_fixed_size(processor),
                      fast_inputs=FastClipInputs.for_processor(processor), drop=NOT_MODEL_INPUTS)
        if adapter.fast_inputs is None:
            adapter.memo = memoised_processor(processor, adapter.prepare, [adapter.prompt("What is this?")])
        return adapter

    def presize(self, img: Image.Image) -> Image.Image:
        """The processor's shortest-edge bicubic resize, done once here: the processor's own resize then
        sees the target size and is a copy (same pixels, measured), which makes batches much cheaper."""
        w, h = img.size
        resample = Image.BICUBIC
        if self.fixed_size is not None:
            new, resample = self.fixed_size
        elif self.pixel_budget is not None:
            new = self.pixel_budget(w, h)
        elif self.shortest_edge:
            edge = self.shortest_edge
            new = (edge, int(edge * h / w)) if w <= h else (int(edge * w / h), edge)
        else:
            return img
        return img if new == (w, h) else img.resize(new, resample=resample)

    def prepare(self, img: Image.Image) -> Image.Image:
        """A decoded RGB image made acceptable to the processor: bounded aspect, pre-sized."""
        return self.presize(pad_to_aspect(img))

    def inputs(self, processor: Any, images: list[Image.Image], prompts: list[str]) -> dict:
        """Model inputs for one image per prompt (always one image list per sample)."""
        if self.fast_inputs is not None:
            return self.fast_inputs(images, prompts)
        run = processor if self.memo is None else self.memo
        enc = run(images=[[im] for im in images], text=prompts, padding=True, return_tensors="pt")
        return {k: v for k, v in enc.items() if k not in self.drop}
