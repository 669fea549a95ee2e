"""Every export format loads as-is in the tool it is named for (SPEC §3.1), proven
with the real libraries: TRL's SFTTrainer and DPOTrainer run one optimiser step of
the embedded model (data/model) on CPU, `datasets.load_dataset` reads the `hf`
directory, and the `sharegpt` directory passes LLaMA-Factory's own checks.

Also: pairs whose two sides say the same are skipped and counted, and a large
export's memory stays flat in the number of rows."""
from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from transformers import AutoModelForImageTextToText, AutoProcessor

from game.export_formats import ExportRecord
from game.export_writer import ExportWriter, write_export
from models.scenes import generate_scene, render_png, sample_question

MODEL = Path(__file__).resolve().parents[2] / "data" / "model"


def _records(n: int = 6) -> tuple[list[ExportRecord], dict[str, bytes]]:
    """Finds on rendered scenes (the model's answer flagged, the true answer as correction), one
    flagged pair whose correction says the same as the answer ("Three." vs "3"), one confirmation."""
    rng = random.Random(3)
    recs, images = [], {}
    for i in range(n):
        scene = generate_scene(rng, "complex")
        key = f"img{i:02d}"
        images[key] = render_png(scene, 64)
        qa = sample_question(scene, rng, None)
        recs.append(ExportRecord(id=f"a{i}", image_key=key, image_mime="image/png", question=qa.question,
                                 model_answer=f"wrong {i}", correct_answer=qa.answer, posterior=0.9,
                                 question_type="count" if i % 2 else "color", model_id="tiny@1",
                                 judged_at=1_700_000_000_000 + i, flagged=True))
    recs.append(ExportRecord(id="same", image_key="img00", image_mime="image/png",
                             question="How many circles are there?", model_answer="3", correct_answer="Three.",
                             posterior=0.95, question_type="count", flagged=True))
    recs.append(ExportRecord(id="conf", image_key="img01", image_mime="image/png", question="Is there a red star?",
                             model_answer="no", correct_answer="no", posterior=0.97, question_type="exists"))
    return recs, images


def _front_matter(card: Path) -> dict:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _load_jsonl(root: Path, tmp_path: Path) -> datasets.Dataset:
    """The README's recipe for the JSON Lines exports: image paths are relative to the export directory."""
    ds = datasets.load_dataset("json", data_files=str(root / "train.jsonl"), split="train",
                               cache_dir=str(tmp_path / "cache"))
    ds = ds.map(lambda r: {"images": [str(root / p) for p in r["images"]]})
    return ds.cast_column("images", datasets.List(datasets.Image()))


def _one_step(trainer_cls, config_cls, dataset, tmp_path: Path, **cfg) -> None:
    """One optimiser step of the embedded model with a TRL trainer: the step ran, the loss is finite
    and the weights moved."""
    model = AutoModelForImageTextToText.from_pretrained(MODEL)
    processor = AutoProcessor.from_pretrained(MODEL)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = config_cls(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=4,
                      learning_rate=1e-3, report_to="none", use_cpu=True, save_strategy="no",
                      logging_steps=1, max_length=None, dataloader_num_workers=0, **cfg)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=processor)
    result = trainer.train()
    assert trainer.state.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))
    moved = [k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert moved, "the optimiser step changed no weight"


def test_trl_sft_export_trains_with_sft_trainer(tmp_path):
    from trl import SFTConfig, SFTTrainer

    recs, images = _records()
    out = tmp_path / "sft"
    card = write_export(recs, images, "trl-sft", out, theta=0.8)
    assert card["skipped_same_sides"] == 1 and card["examples"] == len(recs) - 1
    ds = _load_jsonl(out, tmp_path)
    assert len(ds) == card["examples"] and "same" not in ds["id"]
    # the chat template marks the answer, so TRL can learn from the answer tokens only
    _one_step(SFTTrainer, SFTConfig, ds, tmp_path, assistant_only_loss=True)


def test_dpo_export_trains_with_dpo_trainer(tmp_path):
    from trl import DPOConfig, DPOTrainer

    recs, images = _records()
    out = tmp_path / "dpo"
    card = write_export(recs, images, "dpo", out, theta=0.8)
    # the same-sides pair and the confirmation (chosen == rejected) are both not pairs
    assert card["skipped_same_sides"] == 2 and card["examples"] == len(recs) - 2
    ds = _load_jsonl(out, tmp_path)
    assert all(r["chosen"][0]["content"][0]["text"] != r["rejected"][0]["content"][0]["text"] for r in ds)
    _one_step(DPOTrainer, DPOConfig, ds, tmp_path)


def test_hf_export_loads_with_datasets_and_trains(tmp_path):
    from trl import SFTConfig, SFTTrainer

    recs, images = _records()
    out = tmp_path / "hf"
    card = write_export(recs, images, "hf", out, theta=0.8, filtering="posterior ≥ 0.8, trusted players")
    assert not (out / "images").exists()  # the images live inside the Parquet file
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c"))
    assert len(ds) == card["examples"] == len(recs) - 1
    images_feature = ds.features["images"]
    assert isinstance(images_feature, datasets.List) and isinstance(images_feature.feature, datasets.Image)
    first = ds[0]
    assert first["images"][0].size == (64, 64) and first["correct_answer"] == recs[0].correct_answer
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    meta = _front_matter(out / "README.md")
    assert meta["license"] and meta["configs"][0]["data_files"][0]["split"] == "train"
    assert meta["dataset_info"]["splits"][0]["num_examples"] == len(ds)
    assert {f["name"] for f in meta["dataset_info"]["features"]} == set(ds.features)
    gap = meta["gap"]
    assert gap["theta"] == 0.8 and gap["examples"] == len(ds) and gap["skipped_same_sides"] == 1
    assert gap["question_types"] == {"color": 3, "count": 3, "exists": 1} and gap["model_ids"] == {"tiny@1": 6}
    assert gap["filter"] == "posterior ≥ 0.8, trusted players"
    _one_step(SFTTrainer, SFTConfig, ds, tmp_path)  # as loaded: no glue code


def _llamafactory_check(dataset_dir: Path) -> int:
    """LLaMA-Factory's checks on a `dataset_info.json` entry and its rows, as its source does them
    (src/llamafactory/data/parser.py DatasetAttr.join, converter.py SharegptDatasetConverter and
    _find_medias, mm_plugin.py's image-token count; data/README.md "Multimodal Image Dataset");
    returns the number of examples it would train on."""
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    (name, attr), = info.items()
    assert attr.get("formatting") in ("alpaca", "sharegpt", "openai") and attr["formatting"] == "sharegpt"
    columns = ["prompt", "query", "response", "history", "messages", "system", "tools",
               "images", "videos", "audios", "chosen", "rejected", "kto_tag"]
    tags = ["role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"]
    assert set(attr["columns"]) <= set(columns) and set(attr.get("tags", {})) <= set(tags)
    col = {"messages": "conversations", **attr["columns"]}
    tag = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
           "observation_tag": "observation", "function_tag": "function_call", **attr.get("tags", {})}
    data_file = dataset_dir / attr["file_name"]
    rows = datasets.load_dataset("json", data_files=str(data_file), split="train",  # its loader for .jsonl
                                 cache_dir=str(dataset_dir / ".cache"))
    odd, even = (tag["user_tag"], tag["observation_tag"]), (tag["assistant_tag"], tag["function_tag"])
    for row in rows:
        messages = row[col["messages"]]
        assert len(messages) % 2 == 0 and messages
        for i, m in enumerate(messages):
            assert m[tag["role_tag"]] in (odd, even)[i % 2]
        images = row[col["images"]]
        assert all((dataset_dir / p).is_file() for p in images)  # media_dir = dataset_dir
        tokens = sum(m[tag["content_tag"]].count("<image>") for m in messages)
        assert tokens == len(images), "The number of images does not match the number of <image> tokens"
    return len(rows)


def test_sharegpt_export_is_a_llamafactory_dataset(tmp_path):
    recs, images = _records()
    out = tmp_path / "sharegpt"
    card = write_export(recs, images, "sharegpt", out, theta=0.8)
    assert _llamafactory_check(out) == card["examples"] == len(recs) - 1


def test_llava_export_is_llava_json(tmp_path):
    recs, images = _records()
    out = tmp_path / "llava"
    card = write_export(recs, images, "llava", out, theta=0.8)
    rows = json.loads((out / "train.json").read_text())  # LLaVA reads one JSON array
    assert len(rows) == card["examples"] == len(recs) - 1
    for row in rows:
        assert set(row) == {"id", "image", "conversations"} and (out / row["image"]).is_file()
        human, gpt = row["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n") and gpt["from"] == "gpt"
    # the card's `configs` point `datasets` at the array
    assert len(datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c"))) == len(rows)


def test_empty_export_is_valid_everywhere(tmp_path):
    for fmt in ("llava", "hf", "trl-sft"):
        card = write_export([], {}, fmt, tmp_path / fmt, theta=0.8)
        assert card["examples"] == 0 and _front_matter(tmp_path / fmt / "README.md")["gap"]["examples"] == 0
    assert json.loads((tmp_path / "llava" / "train.json").read_text()) == []


def test_a_directory_holds_one_format(tmp_path):
    recs, images = _records()
    write_export(recs, images, "trl-sft", tmp_path / "x", theta=0.8)
    write_export(recs[:2], images, "trl-sft", tmp_path / "x", theta=0.8)  # the same format: rewritten
    assert len((tmp_path / "x" / "train.jsonl").read_text().splitlines()) == 2
    for other in ("llava", "sharegpt", "hf"):  # sharegpt: the same file name, another layout (the card says)
        with pytest.raises(ValueError, match="already holds another export"):
            write_export(recs, images, other, tmp_path / "x", theta=0.8)
    assert len((tmp_path / "x" / "train.jsonl").read_text().splitlines()) == 2  # nothing lost
    assert not (tmp_path / "x" / "dataset_info.json").exists()


def _peak_bytes(fmt: str, n_rows: int, out: Path) -> int:
    """Peak traced memory while writing `n_rows` rows in chunks of 200 from a generator."""
    png = render_png(generate_scene(random.Random(0), "simple"), 64)
    images = {f"k{i}": png for i in range(20)}
    tracemalloc.start()
    with ExportWriter(out, fmt, theta=0.8) as writer:
        for start in range(0, n_rows, 200):
            writer.add((ExportRecord(id=f"r{i}", image_key=f"k{i % 20}", image_mime="image/png",
                                     question=f"How many circles are there? {i}", model_answer="2",
                                     correct_answer="3", posterior=0.9, question_type="count", flagged=True)
                        for i in range(start, start + 200)), images)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert writer.card["examples"] == n_rows
    return peak


@pytest.mark.parametrize("fmt", ["trl-sft", "hf"])
def test_memory_is_flat_in_the_number_of_rows(fmt, tmp_path):
    small = _peak_bytes(fmt, 1_000, tmp_path / "small")
    large = _peak_bytes(fmt, 4_000, tmp_path / "large")
    assert large < small * 1.5 + 256_000, (small, large)


def test_shipped_chat_template_is_the_one_the_code_builds_and_marks_the_answer():
    """`gap model train` writes the processor of models/tiny_vlm.py, so the shipped template must be that
    one; it marks the assistant's turn (answer and end token) for TRL's `assistant_only_loss`."""
    from models.tiny_vlm import CHAT_TEMPLATE

    assert (MODEL / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    tokenizer = AutoProcessor.from_pretrained(MODEL).tokenizer
    messages = [{"role": "user", "content": [{"type": "text", "text": "How many circles are there?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "2"}]}]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    answer = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.convert_ids_to_tokens(answer) == ["2", "</s>"]


def test_gap_finetune_reads_the_hf_export_as_it_reads_the_vqa_one(tmp_path):
    """`gap finetune DIR` takes an `hf` export (Parquet, images embedded) like the file-based ones:
    the same questions, answers and picture bytes, and a short LoRA run on it."""
    from models.finetune import FinetuneConfig, finetune, read_examples

    recs, images = _records()
    write_export(recs, images, "hf", tmp_path / "hf", theta=0.8, filtering="test")
    write_export(recs, images, "vqa", tmp_path / "vqa", theta=0.8, filtering="test")
    from_hf, from_vqa = read_examples(tmp_path / "hf"), read_examples(tmp_path / "vqa")
    assert [(e.question, e.answer) for e in from_hf] == [(e.question, e.answer) for e in from_vqa]
    assert [e.image for e in from_hf] == [e.image.read_bytes() for e in from_vqa]
    log = finetune(MODEL, tmp_path / "hf", tmp_path / "adapter", FinetuneConfig(max_steps=2, batch_size=2))
    assert log["steps"] == 2 and 0 < log["examples_used"] <= len(from_hf)  # targets the vocabulary cannot spell drop
