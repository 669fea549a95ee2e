"""The "phrasing" stage (`gap model train --from DIR --stage phrasing`): a short continued
training of a shipped checkpoint on players' wordings.

Why a stage of its own instead of retraining (SPEC §3.2): the base recipe takes 90 minutes
on this machine; teaching synonyms, negations, word orders, typos and out-of-world words is
language work only. So the vision tower and projector are frozen (what the model *sees*
stays exactly as shipped, and its known weaknesses stay for the closed loop to fix), the
vocabulary grows by the phrasings' words (new rows start from a synonym's row, e.g. "hue"
from "color"; the template words' rows stay frozen, since the vision side emits vectors
matched to them), and the language model learns from a mix of phrased questions and
replayed template questions on plain-style simple, grid and scattered scenes, so template
accuracy holds. The step count and seed are written to `train_log.json`, so the stage is
repeated exactly with the same `--steps` and `--seed`.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import scenes
from models.scenes.phrasings import SYNONYM_OF
from models.tiny_vlm import build_processor, build_tokenizer, write_answer_forms
from models.training import HELDOUT_N, MIX, _lr
from models.training_data import BatchMaker

PHRASING_MIX = MIX["joint"]  # plain style: simple, grid and scattered scenes, as the base's last stage
PHRASING_SHARE = 0.5  # the rest replays the template questions
TYPO_P = 0.25
BATCH_IMAGES, QUESTIONS_PER_IMAGE = 32, 4
PEAK_LR = 5e-4


def _checkpoint_id(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:12]


def grow_vocabulary(model, old_vocab: dict[str, int], tokenizer) -> int:
    """Resize the (tied) embeddings to `tokenizer`; keep every old id, start each new row from its
    synonym's row (or the mean row) plus a little noise. Returns the number of old rows."""
    new_vocab = tokenizer.get_vocab()
    for word, i in old_vocab.items():
        if new_vocab.get(word) != i:
            raise ValueError(f"the new vocabulary moves {word!r}: the checkpoint's ids must be kept")
    n_old = len(old_vocab)
    if len(new_vocab) == n_old:
        return n_old
    model.resize_token_embeddings(len(new_vocab), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mean = emb[:n_old].mean(0)
        std = float(emb[:n_old].std())
        for word, i in sorted(new_vocab.items(), key=lambda kv: kv[1]):  # by id: the noise draws repeat
            if i < n_old:
                continue
            src = old_vocab.get(SYNONYM_OF.get(word, ""))
            base = emb[src] if src is not None else mean
            emb[i] = base + torch.randn(emb.size(1), generator=gen) * std * 0.1
    return n_old


def _trainable(model, n_old: int) -> list[torch.nn.Parameter]:
    """The language model only; the old word rows get no gradient (a hook zeroes them)."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.model.language_model.parameters()) + list(model.lm_head.parameters())
    params = list({id(p): p for p in params}.values())
    for p in params:
        p.requires_grad_(True)
    emb = model.get_input_embeddings().weight

    def keep_old(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:n_old] = 0
        return grad
    emb.register_hook(keep_old)
    return params


def _step(model, batch, image_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model.model.vision_tower(batch.pixel_values, output_hidden_states=True, return_dict=True)
        feats = out.hidden_states[model.config.vision_feature_layer][:, 1:]
        embeds = model.model.multi_modal_projector(feats)[batch.image_index]
    emb = model.get_input_embeddings()(batch.input_ids)
    mask = (batch.input_ids == image_id).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(mask, embeds.to(emb.dtype).reshape(-1))
    hidden = model.model.language_model(inputs_embeds=emb, attention_mask=batch.attention_mask).last_hidden_state
    logits = model.lm_head(hidden)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), batch.labels[:, 1:].reshape(-1),
                           ignore_index=-100)
    return loss, logits


def _first_token_accuracy(logits: torch.Tensor, batch) -> dict[str, list[bool]]:
    pred = logits[:, :-1].argmax(-1)
    tgt = batch.labels[:, 1:]
    first = (tgt != -100).float().argmax(-1)
    ok = (pred.gather(1, first[:, None]) == tgt.gather(1, first[:, None])).squeeze(1).tolist()
    acc: dict[str, list[bool]] = {}
    for q, o in zip(batch.qtypes, ok):
        acc.setdefault(q, []).append(o)
    return acc


def train_phrasing(src: str | Path, out: str | Path, steps: int = 600, seed: int = 1234, threads: int = 1,
                   log_every: int = 50) -> Path:
    """Continue training the checkpoint in `src` on phrased questions; write the result to `out`."""
    from transformers import LlavaForConditionalGeneration

    src, out = Path(src), Path(out)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    base_log = json.loads((src / "train_log.json").read_text()) if (src / "train_log.json").exists() else {}
    src_id = _checkpoint_id(src)
    old_vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    model = LlavaForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    n_old = grow_vocabulary(model, old_vocab, tokenizer)
    params = _trainable(model, n_old)
    opt = torch.optim.AdamW(params, lr=PEAK_LR, weight_decay=0.0, betas=(0.9, 0.98))
    maker = BatchMaker(processor, seed, scenes.heldout_fingerprints(HELDOUT_N), phrasing=PHRASING_SHARE,
                       typo_p=TYPO_P)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    history: list[dict] = []
    window: dict[str, list[bool]] = {}
    started = time.monotonic()
    model.train()
    for step in tqdm(range(steps), desc="phrasing", mininterval=5, dynamic_ncols=True):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, PEAK_LR, warmup=min(60, max(1, steps // 10)))
        batch = maker.make(step, "phrasing", BATCH_IMAGES, QUESTIONS_PER_IMAGE, PHRASING_MIX, True)
        loss, logits = _step(model, batch, image_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for k, v in _first_token_accuracy(logits.detach(), batch).items():
            window.setdefault(k, []).extend(v)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            entry = {"stage": "phrasing", "step": step + 1, "loss": round(float(loss.detach()), 4),
                     "acc": {k: round(sum(v) / len(v), 3) for k, v in sorted(window.items())},
                     "minutes": round((time.monotonic() - started) / 60, 1)}
            history.append(entry)
            tqdm.write(json.dumps(entry), file=sys.stderr)
            window = {}
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_answer_forms(out)
    stage = {"stage": "phrasing", "from": src_id, "steps": steps, "seed": seed,
             "minutes": round((time.monotonic() - started) / 60, 1), "phrasing_share": PHRASING_SHARE,
             "typo_p": TYPO_P, "batch": [BATCH_IMAGES, QUESTIONS_PER_IMAGE], "history": history[-12:]}
    log = dict(base_log)
    log["continued"] = list(base_log.get("continued", [])) + [stage]
    base_cmd = base_log.get("reproduce") or "gap model train --out DIR"
    log["reproduce"] = f"{base_cmd} && gap model train --from DIR --stage phrasing --out DIR " \
                       f"--steps {steps} --seed {seed}"
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    return out

