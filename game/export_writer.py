"""Writing an export directory incrementally (SPEC §3.1): examples arrive in chunks
and go straight to disk, so memory stays flat in the number of rows however large
the export; the dataset card is built from running counts at the end.

Layout of DIR: the data file (`train.jsonl`; `train.json` for `llava`, one JSON
array as LLaVA reads it; `data/train-00000-of-00001.parquet` for `hf`), `images/`
(not for `hf`, whose Parquet embeds them), `README.md` (the dataset card, with YAML
metadata as the Hugging Face Hub reads it) and, for `sharegpt`, LLaMA-Factory's
`dataset_info.json`. The data file is written under a temporary name and renamed
when complete, so a crash never leaves a half file under the real name.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from game.export_card import dataset_card
from game.export_formats import (FORMATS, HF_FEATURES, ExportRecord, image_path, llamafactory_dataset_info,
                                 sides_agree, to_hf_row, to_json)

DATA_FILE = "train.jsonl"
LLAVA_FILE = "train.json"
HF_FILE = "data/train-00000-of-00001.parquet"
DATASET_NAME = "gap_export"
LICENSE = "other"   # unless the operator names one (`gap export --license`): the data is theirs to license


def data_file(fmt: str) -> str:
    return {"llava": LLAVA_FILE, "hf": HF_FILE}.get(fmt, DATA_FILE)


@dataclass
class CardCounts:
    """Running numbers for the dataset card: constant memory whatever the number of rows."""

    examples: int = 0
    skipped_same: int = 0
    types: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    posterior_sum: float = 0.0
    posterior_n: int = 0

    def add(self, rec: ExportRecord) -> None:
        self.examples += 1
        self.types[rec.question_type] += 1
        if rec.model_id:
            self.models[rec.model_id] += 1
        if rec.judged_at:
            self.first_ms = min(self.first_ms or rec.judged_at, rec.judged_at)
            self.last_ms = max(self.last_ms or rec.judged_at, rec.judged_at)
        if rec.posterior is not None:
            self.posterior_sum += rec.posterior
            self.posterior_n += 1


class ExportWriter:
    """`with ExportWriter(out, fmt, ...) as w: w.add(records, images)` …; then `w.card` holds the numbers.

    `images` maps image keys to bytes for (at least) the records of that call; each image file is
    written once. Pairs whose sides say the same are skipped and counted (:func:`sides_agree`)."""

    def __init__(self, out: Path, fmt: str, *, theta: float | None, title: str = "GAP export",
                 notes: Iterable[str] = (), filtering: str = "", license: str = LICENSE):
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.out, self.fmt, self.theta, self.title = Path(out), fmt, theta, title
        self.notes, self.filtering, self.license = list(notes), filtering, license
        self.counts = CardCounts()
        self._image_keys: set[str] = set()   # one short key per distinct image, not per row
        self.card: dict | None = None
        self._target = self.out / data_file(fmt)
        self._tmp = self._target.with_name(self._target.name + ".tmp")
        self._fh = None
        self._parquet = None

    def __enter__(self) -> "ExportWriter":
        other = [f for f in {DATA_FILE, LLAVA_FILE, HF_FILE} - {data_file(self.fmt)} if (self.out / f).exists()]
        previous = _previous_format(self.out)
        if other or previous not in (None, self.fmt):  # loaders would pick up the wrong file, or a stale one
            raise ValueError(f"{self.out} already holds another export ({previous or ', '.join(sorted(other))}); "
                             f"choose an empty directory for the `{self.fmt}` export")
        self._target.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "hf":
            self._parquet = _parquet_writer(self._tmp)
        else:
            (self.out / "images").mkdir(parents=True, exist_ok=True)
            self._fh = self._tmp.open("w", encoding="utf-8")
            if self.fmt == "llava":
                self._fh.write("[")
        return self

    def add(self, records: Iterable[ExportRecord], images: Mapping[str, bytes]) -> None:
        rows = []
        for rec in records:
            if sides_agree(rec, self.fmt):
                self.counts.skipped_same += 1
                continue
            if self.fmt == "hf":
                rows.append(to_hf_row(rec, images[rec.image_key]))
                self._image_keys.add(rec.image_key)
            else:
                self._write_line(to_json(rec, self.fmt))
                self._write_image(rec, images)
            self.counts.add(rec)
        if rows:
            self._parquet.write_table(_parquet_table(rows))

    def _write_line(self, obj: dict) -> None:
        text = json.dumps(obj, ensure_ascii=False)
        if self.fmt == "llava":
            self._fh.write(("\n" if self.counts.examples == 0 else ",\n") + text)
        else:
            self._fh.write(text + "\n")

    def _write_image(self, rec: ExportRecord, images: Mapping[str, bytes]) -> None:
        if rec.image_key in self._image_keys:
            return
        target = self.out / image_path(rec)
        if not target.exists():
            target.write_bytes(images[rec.image_key])
        self._image_keys.add(rec.image_key)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._fh is not None:
            if self.fmt == "llava":
                self._fh.write("\n]\n")
            self._fh.close()
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
            return
        self._tmp.replace(self._target)
        self._finish()

    def _finish(self) -> None:
        self.card = dataset_card(self.counts, self.fmt, self.theta, title=self.title, n_images=len(self._image_keys),
                                 notes=self.notes, filtering=self.filtering, data_file=data_file(self.fmt),
                                 license=self.license, data_bytes=self._target.stat().st_size)
        (self.out / "README.md").write_text(self.card["markdown"], encoding="utf-8")
        if self.fmt == "sharegpt":
            info = llamafactory_dataset_info(DATASET_NAME, DATA_FILE)
            (self.out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _previous_format(out: Path) -> str | None:
    """The format named by the card of an export already in `out` (None: no card of ours)."""
    card = out / "README.md"
    if not card.is_file():
        return None
    parts = card.read_text(encoding="utf-8").split("---\n")
    try:
        meta = yaml.safe_load(parts[1]) if len(parts) > 2 and parts[0] == "" else None
    except yaml.YAMLError:
        return None
    gap = meta.get("gap") if isinstance(meta, dict) else None
    return gap.get("format") if isinstance(gap, dict) else None


def _parquet_writer(path: Path):
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(path), _parquet_schema())


def _parquet_schema():
    import pyarrow as pa

    s = pa.string()
    image = pa.struct([("bytes", pa.binary()), ("path", s)])
    content = pa.list_(pa.struct([("type", s), ("text", s)]))
    schema = pa.schema([
        ("id", s), ("images", pa.list_(image)), ("messages", pa.list_(pa.struct([("role", s), ("content", content)]))),
        ("question", s), ("model_answer", s), ("correct_answer", s), ("posterior", pa.float64()),
        ("question_type", s), ("model_id", s),
    ])
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": HF_FEATURES}})})


def _parquet_table(rows: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=_parquet_schema())


def write_export(records: Iterable[ExportRecord], images: Mapping[str, bytes], fmt: str, out: Path, *,
                 theta: float | None, title: str = "GAP export", notes: Iterable[str] = (),
                 filtering: str = "") -> dict:
    """Write a whole export of `records` at once (the experiment's arms); returns the card's numbers."""
    with ExportWriter(out, fmt, theta=theta, title=title, notes=notes, filtering=filtering) as w:
        w.add(records, images)
    return w.card
