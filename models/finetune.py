"""LoRA fine-tuning (peft) of an image-text-to-text model on question–answer JSON Lines.

Knows nothing of the game: it reads a directory with `train.jsonl` (or a .jsonl
file) in any of the common shapes — ShareGPT (`conversations`), TRL SFT
(`messages` + `images`), DPO (`prompt`/`chosen` + `images`; the chosen answer
is the target) or plain VQA (`image`, `question`, `correct_answer`/`answer`) —
with image paths relative to that directory.

What is trained: LoRA adapters on the language model's attention and MLP
projections, plus the multimodal projector as a fully trained module
(`modules_to_save`), since the projector is small and is where a tiny VLM's
visual grounding is weakest. The loss covers the answer tokens only (the
prompt, the image tokens and the padding are masked), built with the model's
own chat template — the same prompt the serving code uses.

Output: a peft adapter directory (`adapter_config.json` with
`base_model_name_or_path` = the absolute base directory,
`adapter_model.safetensors`) that `models.loader.load_model` serves directly
(GAP_MODEL=that directory), plus `finetune_log.json`.
"""
from __future__ import annotations

import json
import math
import random
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


@dataclass
class Example:
    image: Path
    question: str
    answer: str


def read_examples(data: Path) -> list[Example]:
    """Examples of a JSON Lines dataset in any of the supported shapes (see module docstring)."""
    data = Path(data)
    path = data / "train.jsonl" if data.is_dir() else data
    root = path.parent
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if "conversations" in obj:
            q = obj["conversations"][0]["value"].replace("<image>", "").strip()
            a, img = obj["conversations"][1]["value"], obj["image"]
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


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(c["text"] for c in content if c.get("type") == "text")


class _Encoder:
    """Tokenises (image, question, answer) with the model's chat template; labels = answer tokens."""

    def __init__(self, processor):
        self.processor = processor
        self.tok = processor.tokenizer
        self.eos = self.tok.eos_token or ""
        self._images: dict[Path, Image.Image] = {}

    def prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def representable(self, answer: str) -> bool:
        """False when a closed-vocabulary tokenizer would turn the target into unknown tokens."""
        unk = self.tok.unk_token_id
        ids = self.tok(answer, add_special_tokens=False)["input_ids"]
        return bool(ids) and (unk is None or unk not in ids)

    def image(self, path: Path) -> Image.Image:
        if path not in self._images:
            with Image.open(path) as im:
                self._images[path] = im.convert("RGB")
        return self._images[path]

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


def finetune(base: str | Path, data: str | Path, out: str | Path, cfg: FinetuneConfig = FinetuneConfig(),
             progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Train a LoRA adapter for `base` on `data`; write it to `out`; return the training log."""
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
    model.train()
    started = time.perf_counter()
    history = []
    order: list = []
    for step in range(total):
        if len(order) < cfg.batch_size:
            more = kept[:]
            rng.shuffle(more)
            order += more
        batch, order = order[:cfg.batch_size], order[cfg.batch_size:]
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
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
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
