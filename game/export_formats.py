"""The shapes of one exported example, per format (SPEC §3.1), each the layout the
tool it is named for reads as-is:

- ``sharegpt``: ``{id, conversations: [{from: human, value: "<image>Q"}, {from: gpt, value: A}], images: [path]}``
  — LLaMA-Factory's multimodal ShareGPT layout (one ``<image>`` token per entry of ``images``),
  described by the ``dataset_info.json`` written beside it (:func:`llamafactory_dataset_info`)
- ``llava``: ``{id, image, conversations}`` with ``"<image>\\nQ"`` — LLaVA's training JSON (one array)
- ``trl-sft``: ``{id, messages: [user (image + text), assistant (text)], images: [path]}`` (TRL's vision SFT)
- ``dpo``: ``{id, prompt, chosen, rejected, images}`` in TRL's conversational form;
  chosen = the player's correction, rejected = the model's wrong answer
- ``vqa``: ``{id, image, question, model_answer, correct_answer, posterior, question_type}``
- ``hf``: a Hugging Face dataset (Parquet, images embedded): TRL's SFT columns ``images`` + ``messages``
  and the ``vqa`` fields, with the features declared (:data:`HF_FEATURES`)

Pure functions of a record: no database, no files (the writer is game/export_writer.py).
"""
from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("sharegpt", "llava", "trl-sft", "dpo", "vqa", "hf")
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class ExportRecord:
    """One example: a question about an image, the model's answer and the target answer.

    `flagged`: the model's answer was judged wrong and `correct_answer` is the player's correction —
    the two form a (rejected, chosen) pair, so they must say different things (SPEC §3.1)."""

    id: str
    image_key: str            # opaque id: the file name stem, never a pool or source name
    image_mime: str
    question: str
    model_answer: str
    correct_answer: str
    posterior: float | None
    question_type: str
    model_id: str | None = None
    judged_at: int | None = None
    flagged: bool = False


def image_path(rec: ExportRecord) -> str:
    return f"images/{rec.image_key}.{_EXT.get(rec.image_mime, 'bin')}"


def sides_agree(rec: ExportRecord, fmt: str) -> bool:
    """True when the record is a pair (a flagged answer and its correction, or any `dpo` row) whose two
    sides say the same by the game's rule (game.rules.same_answer, which also refuses such a correction
    when it is typed): such a pair teaches nothing and contradicts itself, so it is never exported."""
    if not (rec.flagged or fmt == "dpo"):
        return False
    from game.rules import same_answer  # imported on use: `gap --help` lists the formats without the model code

    return same_answer(rec.model_answer, rec.correct_answer)


def _text(text: str) -> list[dict]:
    return [{"type": "text", "text": text}]


def _user(rec: ExportRecord) -> dict:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": rec.question}]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": _text(text)}


def to_json(rec: ExportRecord, fmt: str) -> dict:
    """One example of format `fmt` (any format but `hf`, whose row is :func:`to_hf_row`)."""
    img = image_path(rec)
    if fmt == "sharegpt":
        return {"id": rec.id, "conversations": [
            {"from": "human", "value": IMAGE_TOKEN + rec.question},
            {"from": "gpt", "value": rec.correct_answer}], "images": [img]}
    if fmt == "llava":
        return {"id": rec.id, "image": img, "conversations": [
            {"from": "human", "value": IMAGE_TOKEN + "\n" + rec.question},
            {"from": "gpt", "value": rec.correct_answer}]}
    if fmt == "trl-sft":
        return {"id": rec.id, "messages": [_user(rec), _assistant(rec.correct_answer)], "images": [img]}
    if fmt == "dpo":
        return {"id": rec.id, "prompt": [_user(rec)], "chosen": [_assistant(rec.correct_answer)],
                "rejected": [_assistant(rec.model_answer)], "images": [img]}
    if fmt == "vqa":
        return {"id": rec.id, "image": img, "question": rec.question, "model_answer": rec.model_answer,
                "correct_answer": rec.correct_answer, "posterior": rec.posterior, "question_type": rec.question_type}
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


# `hf`: the features as `datasets` declares them — in the Parquet schema's "huggingface" metadata and,
# in YAML form, in the dataset card — so `load_dataset(DIR)` decodes `images` as PIL images.
_STR = {"dtype": "string", "_type": "Value"}
HF_FEATURES = {
    "id": _STR,
    "images": {"feature": {"_type": "Image"}, "_type": "List"},
    "messages": {"feature": {"role": _STR, "content": {"feature": {"type": _STR, "text": _STR}, "_type": "List"}},
                 "_type": "List"},
    "question": _STR, "model_answer": _STR, "correct_answer": _STR,
    "posterior": {"dtype": "float64", "_type": "Value"},
    "question_type": _STR, "model_id": _STR,
}
HF_FEATURES_YAML = [
    {"name": "id", "dtype": "string"},
    {"name": "images", "list": "image"},
    {"name": "messages", "list": [{"name": "role", "dtype": "string"},
                                  {"name": "content", "list": [{"name": "type", "dtype": "string"},
                                                               {"name": "text", "dtype": "string"}]}]},
    {"name": "question", "dtype": "string"}, {"name": "model_answer", "dtype": "string"},
    {"name": "correct_answer", "dtype": "string"}, {"name": "posterior", "dtype": "float64"},
    {"name": "question_type", "dtype": "string"}, {"name": "model_id", "dtype": "string"},
]


def to_hf_row(rec: ExportRecord, image: bytes) -> dict:
    """One `hf` row, the image's bytes embedded (a `datasets` Image is `{bytes, path}`)."""
    return {"id": rec.id, "images": [{"bytes": image, "path": image_path(rec).removeprefix("images/")}],
            "messages": [{"role": "user", "content": [{"type": "image", "text": None},
                                                      {"type": "text", "text": rec.question}]},
                         {"role": "assistant", "content": [{"type": "text", "text": rec.correct_answer}]}],
            "question": rec.question, "model_answer": rec.model_answer, "correct_answer": rec.correct_answer,
            "posterior": rec.posterior, "question_type": rec.question_type, "model_id": rec.model_id}


def llamafactory_dataset_info(name: str, file_name: str) -> dict:
    """LLaMA-Factory's `dataset_info.json` entry for a `sharegpt` export (its data/README.md,
    "Multimodal Image Dataset"): the file, the formatting, which columns hold the conversation and
    the images, and the role tags. Image paths are relative to the export directory, LLaMA-Factory's
    `media_dir` when `dataset_dir` is that directory."""
    return {name: {"file_name": file_name, "formatting": "sharegpt",
                   "columns": {"messages": "conversations", "images": "images"},
                   "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}}
