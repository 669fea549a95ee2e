"""LoRA fine-tuning (peft) of an image-text-to-text model on question–answer JSON Lines.

Knows nothing of the game: it reads a directory with `train.jsonl` (or a .jsonl
file; `train.json`, one array, for LLaVA's layout; or a Hugging Face dataset's
`data/*.parquet` with its images embedded) in any of the common shapes — ShareGPT / LLaVA (`conversations`), TRL SFT
(`messages` + `images`), DPO (`prompt`/`chosen` + `images`; the chosen answer
is the target) or plain VQA (`image`, `question`, `correct_answer`/`answer`) —
with image paths relative to that directory.

What is trained: LoRA adapters on the language model's attention and MLP
projections, plus the multimodal projector as a fully trained module
(`modules_to_save`), since the projector is small and is where a tiny VLM's
visual grounding is weakest. The loss covers the answer tokens only (the
prompt, the image tokens and the padding are masked), built with the model's
own chat template — the same prompt the serving code uses.

Interruptible: OUT/checkpoint.pt (trainable weights, optimizer, data order and RNG states)
is written every `checkpoint_every` steps and when Ctrl-C arrives (at the next step
boundary); `resume=True` continues bit for bit (tested against an uninterrupted run).

Output: a peft adapter directory (`adapter_config.json` with
`base_model_name_or_path` = the absolute base directory,
`adapter_model.safetensors`) that `models.loader.load_model` serves directly
(GAP_MODEL=that directory), plus `finetune_log.json`.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

LM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_TARGETS = r".*vision_tower.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"


@dataclass
class FinetuneConfig:
    epochs: float = 3.0
    lr: float = 5e-4
    rank: int = 8
    alpha: int | None = None          # default 2 × rank
    dropout: float = 0.05
    batch_size: int = 16
    seed: int = 0
    max_steps: int | None = None
    train_projector: bool = True
    lora_vision: bool = False          # also adapt the vision tower's attention/MLP (where a tiny VLM's errors live)
    full_vision: bool = False          # train the whole vision tower (small models only: it is saved in the adapter)
    threads: int | None = None
    checkpoint_every: int = 50         # steps between resumable checkpoints (OUT/checkpoint.pt); 0: only on Ctrl-C
    interpolate: float = 1.0           # WiSE-FT: the adapter saved is base + interpolate × (fine-tuned − base)

    def __post_init__(self) -> None:
        if not 0.0 < self.interpolate <= 1.0:
            raise ValueError(f"interpolate must be between 0 and 1, not {self.interpolate}")


CHECKPOINT = "checkpoint.pt"
_NOT_TRAINING = ("threads", "checkpoint_every")  # settings a resumed run may change


@dataclass
class Example:
    image: Path | bytes   # a file, or the encoded picture itself (a Parquet dataset embeds it)
    question: str
    answer: str


def _parquet_files(data: Path) -> list[Path]:
    """A Hugging Face dataset directory's train split (`data/train-*.parquet`, or any Parquet in it)."""
    if data.suffix == ".parquet":
        return [data]
    if not data.is_dir() or (data / "train.jsonl").exists() or (data / "train.json").exists():
        return []
    return sorted((data / "data").glob("train-*.parquet")) or sorted(data.rglob("*.parquet"))


def _parquet_objects(files: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for f in files for row in pq.read_table(f, columns=["images", "messages"]).to_pylist()]


def read_examples(data: Path) -> list[Example]:
    """Examples of a dataset in any of the supported shapes (see module docstring)."""
    data = Path(data)
    parquet = _parquet_files(data)
    if parquet:
        return [Example(obj["images"][0]["bytes"], _text(obj["messages"][0]["content"]),
                        _text(obj["messages"][1]["content"])) for obj in _parquet_objects(parquet)]
    if data.is_dir():
        data = data / ("train.json" if (data / "train.json").exists() else "train.jsonl")
    root = data.parent
    if data.suffix == ".json":  # LLaVA's layout: one JSON array
        objects = json.loads(data.read_text(encoding="utf-8"))
    else:
        objects = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for obj in objects:
        if "conversations" in obj:
            q = obj["conversations"][0]["value"].replace("<image>", "").strip()
            a, img = obj["conversations"][1]["value"], (obj.get("images") or [obj.get("image")])[0]
        elif "messages" in obj:
            q = _text(obj["messages"][0]["content"])
            a, img = _text(obj["messages"][1]["content"]), obj["images"][0]
        elif "chosen" in obj:
            q = _text(obj["prompt"][0]["content"]) if isinstance(obj["prompt"], list) else str(obj["prompt"])
            chosen = obj["chosen"]
            a = _text(chosen[0]["content"]) if isinstance(chosen, list) else str(chosen)
            img = obj["images"][0]
        else:
            q, img = obj["question"], obj["image"]
            a = obj.get("correct_answer", obj.get("answer"))
        out.append(Example(root / img, str(q), str(a)))
    return out


def _image_key(image: Path | bytes) -> str:
    """What identifies an example's picture in a resume fingerprint: its file name, or its bytes' hash."""
    return hashlib.sha256(image).hexdigest()[:16] if isinstance(image, bytes) else image.name


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(c["text"] for c in content if c.get("type") == "text" and c.get("text") is not None)


class _Encoder:
    """Tokenises (image, question, answer) with the model's chat template; labels = answer tokens."""

    def __init__(self, processor):
        self.processor = processor
        self.tok = processor.tokenizer
        self.eos = self.tok.eos_token or ""
        self._images: dict[Path | bytes, Image.Image] = {}

    def prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def representable(self, answer: str) -> bool:
        """False when a closed-vocabulary tokenizer would turn the target into unknown tokens."""
        unk = self.tok.unk_token_id
        ids = self.tok(answer, add_special_tokens=False)["input_ids"]
        return bool(ids) and (unk is None or unk not in ids)

    def image(self, source: Path | bytes) -> Image.Image:
        if source not in self._images:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                self._images[source] = im.convert("RGB")
        return self._images[source]

    def encode(self, e: Example) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(token ids of prompt + answer + eos, prompt length, pixel values) — computed once per example."""
        im = self.image(e.image)
        prompt = self.prompt(e.question)
        full = self.processor(images=[im], text=[prompt + e.answer + self.eos], return_tensors="pt")
        plen = len(self.processor(images=[im], text=[prompt], return_tensors="pt")["input_ids"][0])
        return full["input_ids"][0], plen, full["pixel_values"][0]

    def collate(self, items: list[tuple[torch.Tensor, int, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-padded batch; labels are the answer tokens only."""
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        T = max(len(ids) for ids, _, _ in items)
        input_ids = torch.full((len(items), T), pad, dtype=torch.long)
        attn = torch.zeros((len(items), T), dtype=torch.long)
        labels = torch.full((len(items), T), -100, dtype=torch.long)
        for i, (ids, plen, _) in enumerate(items):
            input_ids[i, :len(ids)] = ids
            attn[i, :len(ids)] = 1
            labels[i, plen:len(ids)] = ids[plen:]
        return {"input_ids": input_ids, "attention_mask": attn, "labels": labels,
                "pixel_values": torch.stack([pv for _, _, pv in items])}


class _StopBetweenSteps:
    """Ctrl-C (SIGINT) sets a flag the loop checks after each whole step, so the checkpoint it
    then writes is never half a step; a second Ctrl-C stops at once (the last periodic checkpoint
    remains). Outside the main thread signals cannot be caught and nothing is installed."""

    def __enter__(self) -> "_StopBetweenSteps":
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(path: Path, model, opt, step: int, rng: random.Random, order: list[int],
                     history: list[float], fingerprint: dict) -> None:
    """Everything the loop needs to continue bit for bit; written to a temporary file and renamed,
    so a crash while saving leaves the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "trainable": _trainable_state(model), "optimizer": opt.state_dict(),
                "rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "order": order, "history": history,
                "fingerprint": fingerprint}, tmp)
    tmp.replace(path)


def interpolate_toward_base(model, alpha: float) -> None:
    """Weight-space ensembling (WiSE-FT, Wortsman et al. 2022) of a peft model with its base: every
    weight becomes base + alpha × (fine-tuned − base). A LoRA delta B·A is linear in B, so B is scaled;
    a fully trained module (the projector) is mixed with the original copy peft keeps.

    Why: a few hundred examples of a new style move the whole model; part of that move is what
    costs the scenes it already knew (measured: complex held-out −5 points, with replay). Stepping
    part of the way back keeps most of the gain and little of the loss (benchmarks/README.md)."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for b in [*module.lora_B.values(), *getattr(module, "lora_embedding_B", {}).values()]:
                    (b.weight if hasattr(b, "weight") else b).mul_(alpha)
            elif isinstance(module, ModulesToSaveWrapper):
                original = dict(module.original_module.named_parameters())
                for name, p in module.modules_to_save[module.active_adapter].named_parameters():
                    p.copy_(original[name] + alpha * (p - original[name]))


def finetune(base: str | Path, data: str | Path, out: str | Path, cfg: FinetuneConfig = FinetuneConfig(),
             progress: Callable[[int, int, float], None] | None = None, resume: bool = False) -> dict:
    """Train a LoRA adapter for `base` on `data`; write it to `out`; return the training log.

    Interruptible: a checkpoint is written every `cfg.checkpoint_every` steps and on Ctrl-C; with
    `resume` the run continues from it and ends with the same adapter an uninterrupted run writes.
    A checkpoint of a different base, data or configuration is refused rather than mixed in."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base = Path(base).resolve()
    out = Path(out)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    processor = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    enc = _Encoder(processor)
    examples = read_examples(Path(data))
    kept = [enc.encode(e) for e in examples if enc.representable(e.answer)]
    if not kept:
        raise ValueError(f"no usable examples in {data} ({len(examples)} read)")
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha or 2 * cfg.rank, lora_dropout=cfg.dropout,
                      target_modules=f"({LM_TARGETS})|({VISION_TARGETS})" if cfg.lora_vision else LM_TARGETS,
                      modules_to_save=(["multi_modal_projector"] if cfg.train_projector else [])
                      + (["vision_tower"] if cfg.full_vision else []) or None)
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(kept) / cfg.batch_size)
    total = cfg.max_steps or max(1, round(cfg.epochs * steps_per_epoch))
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    fingerprint = {"base": str(base), "examples_used": len(kept), "total_steps": total,
                   "config": {k: v for k, v in asdict(cfg).items() if k not in _NOT_TRAINING},
                   "data": hashlib.sha256("\n".join(f"{_image_key(e.image)}\x00{e.question}\x00{e.answer}"
                                                     for e in examples).encode()).hexdigest()[:16]}
    history: list[float] = []
    order: list[int] = []
    first = 0
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        if ckpt["fingerprint"] != fingerprint:
            raise ValueError(f"{ckpt_path} belongs to another run (base, data or settings differ); "
                             "delete it or run without --resume")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in ckpt["trainable"].items():
                params[name].copy_(value)
        opt.load_state_dict(ckpt["optimizer"])
        rng.setstate(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        first, order, history = ckpt["step"], ckpt["order"], ckpt["history"]
    model.train()
    started = time.perf_counter()
    with _StopBetweenSteps() as stop:
        for step in range(first, total):
            if len(order) < cfg.batch_size:
                more = list(range(len(kept)))
                rng.shuffle(more)
                order += more
            batch, order = [kept[i] for i in order[:cfg.batch_size]], order[cfg.batch_size:]
            lr = cfg.lr * min(1.0, (step + 1) / max(1, total // 10)) * (0.5 * (1 + math.cos(math.pi * step / total)))
            for g in opt.param_groups:
                g["lr"] = lr
            loss = model(**enc.collate(batch)).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            history.append(round(float(loss.detach()), 4))
            if progress:
                progress(step + 1, total, float(loss.detach()))
            if stop.requested:
                _save_checkpoint(ckpt_path, model, opt, step + 1, rng, order, history, fingerprint)
                raise KeyboardInterrupt(f"stopped after step {step + 1} of {total}; resume with --resume")
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
                _save_checkpoint(ckpt_path, model, opt, step + 1, rng, order, history, fingerprint)
    model.eval()
    if cfg.interpolate != 1.0:
        interpolate_toward_base(model, cfg.interpolate)
    model.save_pretrained(out)
    ckpt_path.unlink(missing_ok=True)
    cfg_path = out / "adapter_config.json"
    adapter_cfg = json.loads(cfg_path.read_text())
    adapter_cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(adapter_cfg, indent=2))
    log = {"base": str(base), "data": str(data), "examples_read": len(examples), "examples_used": len(kept),
           "steps": total, "trainable_parameters": trainable, "seconds": round(time.perf_counter() - started, 1),
           "loss_first": history[0], "loss_last_10": round(sum(history[-10:]) / len(history[-10:]), 4),
           "config": asdict(cfg)}
    (out / "finetune_log.json").write_text(json.dumps(log | {"loss_history": history}, indent=1))
    return log
