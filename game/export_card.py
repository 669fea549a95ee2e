"""The dataset card of an export (SPEC §3.1): `README.md` with YAML metadata in the
form the Hugging Face Hub and `datasets` read (licence, task, configs/splits and,
for `hf`, the features), our own numbers under `gap:` (counts, question-type mix,
θ, model ids, how the rows were filtered, pairs skipped), then the same as prose."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

import yaml

from game.export_formats import HF_FEATURES_YAML

_PROSE = ("Each example is a question a player asked about the image, the model's answer the player "
          "flagged as wrong, and the player's correction (the training target). Only flags whose posterior "
          "P(model mistake | flag) passed θ, from players neither muted nor gated, are included (SPEC §2).")


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def size_category(n: int) -> str:
    """The Hub's size bucket for n examples."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _metadata(counts, fmt: str, theta: float | None, *, title: str, n_images: int, data_file: str,
              license: str, filtering: str, date_range: str, mean_posterior: float | None,
              data_bytes: int) -> dict:
    pattern = "data/train-*" if fmt == "hf" else data_file
    meta = {
        "license": license,
        "license_name": "set-by-the-operator" if license == "other" else None,
        "pretty_name": title,
        "language": ["en"],
        "task_categories": ["visual-question-answering", "image-text-to-text"],
        "tags": ["gap", "vqa", "model-mistakes", fmt],
        "size_categories": [size_category(counts.examples)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": pattern}]}],
    }
    if fmt == "hf":
        meta["dataset_info"] = {"features": HF_FEATURES_YAML, "splits": [
            {"name": "train", "num_bytes": data_bytes, "num_examples": counts.examples}],
            "download_size": data_bytes, "dataset_size": data_bytes}
    meta["gap"] = {
        "format": fmt, "theta": theta, "examples": counts.examples, "images": n_images,
        "skipped_same_sides": counts.skipped_same, "question_types": dict(counts.types.most_common()),
        "model_ids": dict(counts.models.most_common()),
        "mean_posterior": mean_posterior, "date_range": date_range, "filter": filtering or None,
    }
    return {k: v for k, v in meta.items() if v is not None}


def dataset_card(counts, fmt: str, theta: float | None, *, title: str, n_images: int,
                 notes: Iterable[str] = (), filtering: str = "", data_file: str = "train.jsonl",
                 license: str = "other", data_bytes: int = 0) -> dict:
    """The card's Markdown (YAML front matter + prose) and its numbers, from running `counts`."""
    date_range = f"{stamp(counts.first_ms)} – {stamp(counts.last_ms)}" if counts.first_ms else "n/a"
    mean_post = round(counts.posterior_sum / counts.posterior_n, 6) if counts.posterior_n else None
    meta = _metadata(counts, fmt, theta, title=title, n_images=n_images, data_file=data_file, license=license,
                     filtering=filtering, date_range=date_range, mean_posterior=mean_post, data_bytes=data_bytes)
    n = counts.examples
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# {title}", "",
        f"- format: `{fmt}` (`{data_file}`{'' if fmt == 'hf' else ', images in `images/`'})",
        f"- examples: {n}; images: {n_images}",
        f"- θ (posterior threshold): {theta if theta is not None else 'none (unfiltered)'}",
        f"- mean posterior: {mean_post:.3f}" if mean_post is not None else "- mean posterior: n/a",
        f"- pairs skipped because both sides say the same (after normalisation): {counts.skipped_same}",
        f"- date range: {date_range}",
        f"- model ids: {', '.join(f'{m} ({k})' for m, k in counts.models.most_common()) or 'n/a'}",
        f"- licence: {license}" + (" — to be set by the operator before publishing" if license == "other" else ""),
        "", "| question type | examples | share |", "|---|---:|---:|",
    ]
    lines += [f"| {t} | {k} | {k / max(n, 1):.1%} |" for t, k in counts.types.most_common()]
    lines += ["", _PROSE] + ([f"Filter: {filtering}"] if filtering else [])
    lines += [""] + [f"- {note}" for note in notes]
    return {"examples": n, "images": n_images, "theta": theta, "question_types": dict(counts.types),
            "skipped_same_sides": counts.skipped_same, "date_range": date_range,
            "model_ids": dict(counts.models), "markdown": "\n".join(lines) + "\n"}
