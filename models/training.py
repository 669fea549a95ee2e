"""Training the embedded model from scratch on CPU (`gap model train`).

The staged recipe (measured: plain end-to-end training leaves
colour, existence and position near chance within the time budget):

1. **slots** — the language model learns to answer over 16 clean "slot"
   vectors (embedding of the colour + shape + size + glyph of the object in
   each grid cell, or a background vector, plus row/column vectors) instead of
   image tokens. A training-only head at a middle layer marks which slots the
   question refers to. No images are rendered, so this stage is fast.
2. **align** — the vision tower and projector learn to emit those slot
   vectors from pixels (MSE), with per-patch auxiliary classifiers and the
   answer loss through the frozen language model.
3. **joint** — everything end to end, the language model at a lower rate,
   the slot-matching and auxiliary losses kept on; "scattered" free-placement scenes included.

Each stage gets a share of the step budget. `--minutes` measures the speed
of the first steps and turns the time budget into step counts, which are
written to the checkpoint (train_log.json) so a run can be repeated exactly
with `--steps`. Checkpoints of the whole training state are written every
few minutes to `<out>/train_state.pt`; `--resume` continues from there.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from models import scenes
from models.tiny_vlm import N_IMAGE_TOKENS, build_model, build_processor, build_tokenizer, write_answer_forms
from models.training_data import N_COLOR, N_GLYPH, N_SHAPE, N_SIZE, Batch, BatchMaker

STAGES = ("slots", "align", "joint")
STAGE_SHARE = {"slots": 0.28, "align": 0.27, "joint": 0.45}
MIX = {
    "slots": {"simple": 0.5, "grid": 0.5},
    "align": {"simple": 0.55, "grid": 0.25, "scattered": 0.2},
    "joint": {"simple": 0.55, "grid": 0.2, "scattered": 0.25},
}
BATCH = {"slots": (128, 1), "align": (96, 1), "joint": (64, 2)}  # (images, questions per image)
HELDOUT_N = 6000
EMBED_STD = 0.3


class SlotEmbedder(nn.Module):
    """The clean per-cell input of stage 1 and the target the vision side learns to emit.

    Colour, shape and glyph parts are the language model's own (tied) word
    embeddings of "red", "circle", "A": matching a question word to a slot is
    then a comparison of equal vectors, and copying a slot's colour to the
    output is reading back the word's embedding — both easy for a tiny LM.
    """

    def __init__(self, hidden: int, word_embeddings: nn.Embedding, color_ids: list[int], shape_ids: list[int],
                 glyph_ids: list[int]):
        super().__init__()
        self.words = [word_embeddings]  # a list: not registered twice as a submodule
        self.register_buffer("color_ids", torch.tensor(color_ids), persistent=False)
        self.register_buffer("shape_ids", torch.tensor(shape_ids), persistent=False)
        self.register_buffer("glyph_ids", torch.tensor(glyph_ids), persistent=False)
        self.background = nn.Parameter(torch.randn(hidden) * 0.3)
        self.size = nn.Embedding(N_SIZE, hidden)
        self.glyph_scale = nn.Parameter(torch.tensor(0.5))
        self.row = nn.Parameter(torch.randn(4, hidden) * 0.3)
        self.col = nn.Parameter(torch.randn(4, hidden) * 0.3)
        nn.init.normal_(self.size.weight, std=0.3)

    def forward(self, slots: torch.Tensor) -> torch.Tensor:  # (B, 16, 4) -> (B, 16, H)
        emb = self.words[0]
        pos = (self.row[:, None, :] + self.col[None, :, :]).reshape(N_IMAGE_TOKENS, -1)
        present = (slots[..., 0] > 0).unsqueeze(-1).float()
        obj = (emb(self.color_ids[slots[..., 0].clamp_min(1) - 1]) + emb(self.shape_ids[slots[..., 1].clamp_min(1) - 1])
               + self.size(slots[..., 2]))
        has_glyph = (slots[..., 3] > 0).unsqueeze(-1).float()
        glyph = emb(self.glyph_ids[slots[..., 3].clamp_min(1) - 1]) * has_glyph * self.glyph_scale
        return present * (obj + glyph) + (1 - present) * self.background + pos


class AuxHeads(nn.Module):
    """Training-only heads: per-patch attributes on the vision features, relevance at a middle LM layer."""

    def __init__(self, vision_hidden: int, text_hidden: int):
        super().__init__()
        self.color = nn.Linear(vision_hidden, N_COLOR)
        self.shape = nn.Linear(vision_hidden, N_SHAPE)
        self.size = nn.Linear(vision_hidden, N_SIZE)
        self.glyph = nn.Linear(vision_hidden, N_GLYPH)
        self.relevance = nn.Linear(text_hidden, 1)


@dataclass
class TrainConfig:
    out: Path
    state_dir: Path = Path("runs/model-train")
    minutes: float = 90.0
    steps: tuple[int, int, int] | None = None
    seed: int = 1234
    resume: bool = False
    threads: int = 1
    checkpoint_every_s: float = 120.0
    eval_every: int = 200
    log: list = field(default_factory=list)


def _lr(step: int, total: int, peak: float, warmup: int = 60) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.tokenizer = build_tokenizer()
        self.processor = build_processor(self.tokenizer)
        self.model = build_model(self.tokenizer)
        tcfg = self.model.config.text_config
        vcfg = self.model.config.vision_config
        with torch.no_grad():  # well separated word vectors (measured: std ~0.5 made slot pre-training work)
            self.model.get_input_embeddings().weight.normal_(0.0, EMBED_STD)
        ids = self.tokenizer.convert_tokens_to_ids
        self.slots = SlotEmbedder(tcfg.hidden_size, self.model.get_input_embeddings(),
                                  [ids(c) for c in scenes.COLORS], [ids(s) for s in scenes.SHAPES],
                                  [ids(g) for g in scenes.GLYPHS])
        self.aux = AuxHeads(vcfg.hidden_size, tcfg.hidden_size)
        self.mid_layer = tcfg.num_hidden_layers // 2
        self.image_id = self.tokenizer.convert_tokens_to_ids("<image>")
        self.maker = BatchMaker(self.processor, cfg.seed, scenes.heldout_fingerprints(HELDOUT_N))
        self.stage_idx = 0
        self.step = 0
        self.stage_steps: list[int] | None = list(cfg.steps) if cfg.steps else None
        self.opt = None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ pieces
    @property
    def lm(self):
        return self.model.model.language_model

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.model.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
        return out.hidden_states[self.model.config.vision_feature_layer][:, 1:]

    def run_lm(self, batch: Batch, image_embeds: torch.Tensor):
        emb = self.model.get_input_embeddings()(batch.input_ids)
        mask = (batch.input_ids == self.image_id).unsqueeze(-1).expand_as(emb)
        emb = emb.masked_scatter(mask, image_embeds.to(emb.dtype).reshape(-1))
        out = self.lm(inputs_embeds=emb, attention_mask=batch.attention_mask, output_hidden_states=True)
        logits = self.model.lm_head(out.last_hidden_state)
        return logits, out.hidden_states

    def answer_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                               ignore_index=-100)

    def relevance_loss(self, batch: Batch, hidden_states) -> torch.Tensor:
        h = hidden_states[self.mid_layer]
        img = h[batch.input_ids == self.image_id].reshape(h.size(0), N_IMAGE_TOKENS, -1)
        logit = self.aux.relevance(img).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logit, batch.relevance)

    def aux_loss(self, feats: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(self.aux.color(feats).flatten(0, 1), slots[..., 0].flatten())
        loss = loss + F.cross_entropy(self.aux.shape(feats).flatten(0, 1), slots[..., 1].flatten())
        loss = loss + 0.5 * F.cross_entropy(self.aux.size(feats).flatten(0, 1), slots[..., 2].flatten())
        loss = loss + 0.5 * F.cross_entropy(self.aux.glyph(feats).flatten(0, 1), slots[..., 3].flatten())
        return loss

    def accuracy(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """First-answer-token accuracy per question type (cheap training signal)."""
        pred = logits[:, :-1].argmax(-1)
        tgt = batch.labels[:, 1:]
        first = (tgt != -100).float().argmax(-1)
        ok = (pred.gather(1, first[:, None]) == tgt.gather(1, first[:, None])).squeeze(1)
        acc: dict[str, list[bool]] = {}
        for q, o in zip(batch.qtypes, ok.tolist()):
            acc.setdefault(q, []).append(o)
        return {k: sum(v) / len(v) for k, v in acc.items()}

    def slot_accuracy(self, embeds: torch.Tensor, slots: torch.Tensor) -> dict[str, float]:
        """How often the emitted vector is nearest to the right colour and shape word (align stage)."""
        emb = self.model.get_input_embeddings().weight
        present = slots[..., 0] > 0
        if not present.any():
            return {}
        e = embeds[present]
        col = (e @ emb[self.slots.color_ids].T).argmax(-1) + 1
        shp = (e @ emb[self.slots.shape_ids].T).argmax(-1) + 1
        return {"slot_color": float((col == slots[..., 0][present]).float().mean()),
                "slot_shape": float((shp == slots[..., 1][present]).float().mean())}

    # ------------------------------------------------------------------ stages
    def stage_params(self, stage: str):
        lm_params = list(self.lm.parameters()) + list(self.model.lm_head.parameters())
        vis_params = list(self.model.model.vision_tower.parameters()) + list(self.model.model.multi_modal_projector.parameters())
        aux_vis = [p for n, p in self.aux.named_parameters() if not n.startswith("relevance")]
        aux_rel = list(self.aux.relevance.parameters())
        uniq = lambda ps: list({id(p): p for p in ps}.values())  # noqa: E731 (tied embeddings)
        if stage == "slots":
            return [{"params": uniq(lm_params + list(self.slots.parameters()) + aux_rel), "lr": 3e-3}]
        if stage == "align":
            return [{"params": uniq(vis_params + aux_vis), "lr": 2e-3}]
        return [{"params": uniq(vis_params + aux_vis), "lr": 1e-3},
                {"params": uniq(lm_params + aux_rel), "lr": 3e-4}]

    def set_trainable(self, stage: str) -> None:
        for p in list(self.model.parameters()) + list(self.slots.parameters()) + list(self.aux.parameters()):
            p.requires_grad_(False)
        for group in self.stage_params(stage):
            for p in group["params"]:
                p.requires_grad_(True)

    def make_optimizer(self, stage: str) -> None:
        self.set_trainable(stage)
        groups = self.stage_params(stage)
        for g in groups:
            g["peak"] = g["lr"]
        self.opt = torch.optim.AdamW(groups, weight_decay=0.01, betas=(0.9, 0.98))

    def train_step(self, stage: str, batch: Batch) -> tuple[float, dict[str, float]]:
        self.model.train()
        if stage == "slots":
            embeds = self.slots(batch.slots)[batch.image_index]
            logits, hs = self.run_lm(batch, embeds)
            loss = self.answer_loss(logits, batch.labels) + 0.5 * self.relevance_loss(batch, hs)
        else:
            feats = self.vision_features(batch.pixel_values)
            embeds = self.model.model.multi_modal_projector(feats)
            target = self.slots(batch.slots).detach()
            mse = F.mse_loss(embeds, target) / target.pow(2).mean().clamp_min(1e-3)
            loss = mse + 0.5 * self.aux_loss(feats, batch.slots)
            if stage == "align":  # vision only: no language-model work, so many cheap steps
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
                self.opt.step()
                return float(loss.detach()), self.slot_accuracy(embeds.detach(), batch.slots)
            logits, hs = self.run_lm(batch, embeds[batch.image_index])
            loss = loss + self.answer_loss(logits, batch.labels) + 0.3 * self.relevance_loss(batch, hs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
        self.opt.step()
        return float(loss.detach()), self.accuracy(logits.detach(), batch)

    # ------------------------------------------------------------------ state
    def state_path(self) -> Path:
        return self.cfg.state_dir / "train_state.pt"

    def save_state(self) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path().with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "slots": self.slots.state_dict(), "aux": self.aux.state_dict(),
                    "opt": self.opt.state_dict() if self.opt else None, "stage_idx": self.stage_idx,
                    "step": self.step, "stage_steps": self.stage_steps, "history": self.history,
                    "seed": self.cfg.seed, "time_used": self.time_used() if hasattr(self, "session_start") else 0.0},
                   tmp)
        os.replace(tmp, self.state_path())

    def load_state(self) -> bool:
        if not self.state_path().exists():
            return False
        st = torch.load(self.state_path(), map_location="cpu", weights_only=False)
        self.model.load_state_dict(st["model"])
        self.slots.load_state_dict(st["slots"])
        self.aux.load_state_dict(st["aux"])
        self.stage_idx, self.step, self.stage_steps = st["stage_idx"], st["step"], st["stage_steps"]
        self.history = st["history"]
        self.time_used_before = float(st.get("time_used", 0.0))
        if self.stage_idx < len(STAGES):
            self.make_optimizer(STAGES[self.stage_idx])
            if st["opt"] is not None:
                self.opt.load_state_dict(st["opt"])
        return True

    def export(self, out: Path) -> None:
        """Write the servable checkpoint (no training-only heads); fp32 weights stay under 20 MB."""
        out.mkdir(parents=True, exist_ok=True)
        self.model.eval()
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        write_answer_forms(out)
        log = {"seed": self.cfg.seed, "stage_steps": self.stage_steps, "stages": list(STAGES),
               "history": self.history[-30:],
               "reproduce": f"gap model train --out DIR --seed {self.cfg.seed} --steps "
                            + ",".join(map(str, self.stage_steps or []))}
        (out / "train_log.json").write_text(json.dumps(log, indent=1))

    # ------------------------------------------------------------------ loop
    def calibrate(self) -> list[int]:
        """Turn the minute budget into per-stage step counts from the speed of a few steps."""
        per_step = {}
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        slot_saved = {k: v.clone() for k, v in self.slots.state_dict().items()}
        for stage in STAGES:
            self.make_optimizer(stage)
            n_img, qpi = BATCH[stage]
            times = []
            for i in range(4):
                t = time.perf_counter()
                b = self.maker.make(10_000_000 + i, stage, n_img, qpi, MIX[stage], stage != "slots")
                self.train_step(stage, b)
                times.append(time.perf_counter() - t)
            per_step[stage] = float(np.median(times[1:]))
        self.model.load_state_dict(saved)
        self.slots.load_state_dict(slot_saved)
        budget = self.cfg.minutes * 60 * 0.95
        steps = [max(20, int(budget * STAGE_SHARE[s] / per_step[s])) for s in STAGES]
        tqdm.write(f"calibrated: s/step {per_step} -> steps {steps}")
        return steps

    def _replan(self, stage_idx: int, step: int, total: int, sec_per_step: float) -> int:
        """Fit the current stage into the time budget (only with --minutes): stage i must end when the
        cumulative share of stages 0..i of the budget is used up; overruns shrink the later stages."""
        if self.fixed_steps:
            return total
        end = self.time_budget * sum(STAGE_SHARE[s] for s in STAGES[: stage_idx + 1])
        allowed = end - self.time_used()
        return max(step + 10, int(step + allowed / max(sec_per_step, 1e-3)))

    def time_used(self) -> float:
        return self.time_used_before + (time.monotonic() - self.session_start)

    def run(self, max_stages: int | None = None) -> Path | None:
        """Train the remaining stages (or only up to stage `max_stages`, then stop with the state saved)."""
        torch.set_num_threads(self.cfg.threads)
        resumed = self.cfg.resume and self.load_state()
        self.fixed_steps = self.cfg.steps is not None
        self.time_budget = self.cfg.minutes * 60 * 0.95
        self.session_start = time.monotonic()
        self.time_used_before = getattr(self, "time_used_before", 0.0)
        if not resumed and self.stage_steps is None:
            self.stage_steps = self.calibrate()
        last_ckpt = time.monotonic()
        while self.stage_idx < len(STAGES):
            if max_stages is not None and self.stage_idx >= max_stages:
                return None
            stage = STAGES[self.stage_idx]
            total = self.stage_steps[self.stage_idx]
            if self.opt is None or not resumed:
                self.make_optimizer(stage)
            resumed = False
            n_img, qpi = BATCH[stage]
            bar = tqdm(total=total, initial=self.step, desc=f"stage {self.stage_idx + 1}/3 {stage}",
                       mininterval=5, dynamic_ncols=True)
            window: dict[str, list[float]] = {}
            stage_started = time.monotonic()
            first_step = self.step
            while self.step < total:
                for g in self.opt.param_groups:
                    g["lr"] = _lr(self.step, total, g["peak"])
                batch = self.maker.make(self.step, stage, n_img, qpi, MIX[stage], stage != "slots")
                loss, acc = self.train_step(stage, batch)
                for k, v in acc.items():
                    window.setdefault(k, []).append(v)
                self.step += 1
                bar.update(1)
                if self.step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}")
                    per = (time.monotonic() - stage_started) / max(1, self.step - first_step)
                    new_total = self._replan(self.stage_idx, self.step, total, per)
                    if new_total != total:
                        total = new_total
                        self.stage_steps[self.stage_idx] = total
                        bar.total = total
                if self.step % self.cfg.eval_every == 0 or self.step == total:
                    summary = {k: round(float(np.mean(v[-20:])), 3) for k, v in sorted(window.items())}
                    self.history.append({"stage": stage, "step": self.step, "loss": round(loss, 4), "acc": summary,
                                         "minutes": round(self.time_used() / 60, 1)})
                    tqdm.write(json.dumps(self.history[-1]))
                    window = {}
                if time.monotonic() - last_ckpt > self.cfg.checkpoint_every_s:
                    self.save_state()
                    last_ckpt = time.monotonic()
            bar.close()
            self.stage_idx += 1
            self.step = 0
            self.opt = None
            self.save_state()
        self.export(self.cfg.out)
        return self.cfg.out


def train(out: str | Path, minutes: float = 90.0, resume: bool = False, seed: int = 1234,
          steps: tuple[int, int, int] | None = None, threads: int = 1,
          state_dir: str | Path = "runs/model-train") -> Path:
    """Train (or resume) and write a servable checkpoint to `out` (training state under `state_dir`)."""
    cfg = TrainConfig(out=Path(out), state_dir=Path(state_dir), minutes=minutes, resume=resume, seed=seed,
                      steps=steps, threads=threads)
    return Trainer(cfg).run()
