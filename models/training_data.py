"""Training batches for the embedded model, drawn from the shared scene generator.

Each example is one (scene, question, answer); besides the token ids and the
pixels it carries the per-cell "slot" labels (colour, shape, size, glyph of the
object in each of the 16 grid cells) and which cells the question is about.
Those labels drive the training-only losses of the staged recipe
(models/training.py); the saved model never sees them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from models import scenes
from models.scenes.phrasings import phrased_question, typo
from models.tiny_vlm import IMAGE_SIZE, N_IMAGE_TOKENS, OFF_TOPIC_NOUNS, answer_to_tokens

GRID = scenes.GRID
COLOR_IDS = {c: i + 1 for i, c in enumerate(scenes.COLORS)}   # 0 = background
SHAPE_IDS = {s: i + 1 for i, s in enumerate(scenes.SHAPES)}
SIZE_IDS = {s: i + 1 for i, s in enumerate(scenes.SIZES)}
GLYPH_IDS = {g: i + 1 for i, g in enumerate(scenes.GLYPHS)}
N_COLOR, N_SHAPE, N_SIZE, N_GLYPH = len(COLOR_IDS) + 1, len(SHAPE_IDS) + 1, len(SIZE_IDS) + 1, len(GLYPH_IDS) + 1

QTYPE_WEIGHTS: dict[str, float] = {
    "count_all": 1.0, "count_shape": 1.0, "count_color": 1.0, "count_color_shape": 0.7, "color": 1.2,
    "shape": 1.0, "exists_shape": 1.0, "exists_color": 1.0, "exists_color_shape": 1.2, "position_lr": 1.2,
    "position_tb": 1.2, "relation": 1.0, "text": 0.6, "other": 0.3,
}
_JUNK_TEMPLATES = ["What color is the {n}?", "How many {n}s are there?", "Is there a {n}?", "What is the {n} doing?",
                   "Is the {n} on the left or the right?", "What shape is the {n}?", "Where is the {n}?"]


def cell_of(o: scenes.SceneObject) -> int:
    """The grid cell (= image token) an object belongs to: its own cell, or the one holding its centre."""
    if o.cell is not None:
        return o.cell
    col = min(GRID - 1, max(0, int(o.x * GRID)))
    row = min(GRID - 1, max(0, int(o.y * GRID)))
    return row * GRID + col


def slot_labels(scene: scenes.Scene) -> np.ndarray:
    """(16, 4) int array: colour, shape, size, glyph id of the object in each cell (0 = none; last drawn wins)."""
    out = np.zeros((N_IMAGE_TOKENS, 4), dtype=np.int64)
    for o in scene.objects:
        out[cell_of(o)] = (COLOR_IDS[o.color], SHAPE_IDS[o.shape], SIZE_IDS[o.size], GLYPH_IDS.get(o.text or "", 0))
    return out


def draw_training_scene(rng: random.Random, mix: dict[str, float], exclude: frozenset[str]) -> scenes.Scene:
    """A scene of a complexity drawn from `mix`, never one whose picture is in `exclude` (the held-out set)."""
    names = list(mix)
    while True:
        s = scenes.generate_scene(rng, rng.choices(names, weights=[mix[n] for n in names])[0])
        if s.fingerprint() not in exclude:
            return s


def pick_qtype(rng: random.Random) -> str:
    names = list(QTYPE_WEIGHTS)
    return rng.choices(names, weights=[QTYPE_WEIGHTS[n] for n in names])[0]


def sample_qa(scene: scenes.Scene, rng: random.Random) -> scenes.QA:
    """A question of a weighted-random type (with some off-topic ones answered "I can't tell")."""
    for _ in range(10):
        qtype = pick_qtype(rng)
        if qtype == "other" and rng.random() < 0.5:
            q = rng.choice(_JUNK_TEMPLATES).format(n=rng.choice(OFF_TOPIC_NOUNS))
            return scenes.QA(q, scenes.CANT_TELL, "other", "other", ())
        try:
            return scenes.sample_question(scene, rng, qtype)
        except scenes.NoQuestion:
            continue
    return scenes.sample_question(scene, rng, "count_all")


@dataclass
class Batch:
    input_ids: torch.Tensor       # (B, T) right-padded prompt + answer + </s>
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor          # (B, T) -100 except answer tokens (shifted inside the loss)
    slots: torch.Tensor           # (B_img, 16, 4) slot labels per image
    image_index: torch.Tensor     # (B,) which image each example belongs to
    relevance: torch.Tensor       # (B, 16) 1 where the question is about the object in that cell
    pixel_values: torch.Tensor | None  # (B_img, 3, 64, 64) or None (text-only stage)
    qtypes: list[str]
    answers: list[str]


class BatchMaker:
    """Builds batches; deterministic given (seed, step)."""

    def __init__(self, processor, seed: int, exclude: frozenset[str] = frozenset(), phrasing: float = 0.0,
                 typo_p: float = 0.0):
        """`phrasing`: share of questions in a player's wording (models.scenes.phrasings) instead of the
        templates; `typo_p`: chance that such a question has a misspelt function word."""
        self.phrasing = phrasing
        self.typo_p = typo_p
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.seed = seed
        self.exclude = exclude
        tok = self.tokenizer
        self.user_id = tok.convert_tokens_to_ids("<|user|>")
        self.asst_id = tok.convert_tokens_to_ids("<|assistant|>")
        self.image_id = tok.convert_tokens_to_ids("<image>")
        self.eos_id = tok.eos_token_id
        self.pad_id = tok.pad_token_id
        ip = processor.image_processor
        self.mean = np.array(ip.image_mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(ip.image_std, dtype=np.float32).reshape(3, 1, 1)

    def scene(self, rng: random.Random, mix: dict[str, float]) -> scenes.Scene:
        return draw_training_scene(rng, mix, self.exclude)

    def sample(self, scene: scenes.Scene, rng: random.Random) -> scenes.QA:
        """A template question, or (with probability `phrasing`) a phrased one; no extra draws when
        `phrasing` is 0, so runs of the base recipe repeat exactly."""
        if self.phrasing > 0 and rng.random() < self.phrasing:
            for _ in range(5):
                qa = phrased_question(scene, rng)
                if qa is not None:
                    return replace(qa, question=typo(qa.question, rng, self.typo_p))
        return sample_qa(scene, rng)

    def pixels(self, scene: scenes.Scene) -> np.ndarray:
        """Same path as serving: a larger render, bicubic down to 64 px, CLIP normalisation."""
        img = scenes.render(scene, 128).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (arr - self.mean) / self.std

    def make(self, step: int, stage: str, n_images: int, q_per_image: int, mix: dict[str, float],
             with_pixels: bool) -> Batch:
        rng = random.Random(f"{self.seed}:{stage}:{step}")
        scene_list = [self.scene(rng, mix) for _ in range(n_images)]
        qas, img_idx = [], []
        for i, sc in enumerate(scene_list):
            for _ in range(q_per_image):
                qas.append(self.sample(sc, rng))
                img_idx.append(i)
        enc = self.tokenizer([qa.question for qa in qas], add_special_tokens=False)["input_ids"]
        seqs, lab_starts = [], []
        vocab = self.tokenizer.get_vocab()
        for ids, qa in zip(enc, qas):
            ids = ids[:48]
            prompt = [self.user_id] + ids + [self.image_id] * N_IMAGE_TOKENS + [self.asst_id]
            answer = [vocab[t] for t in answer_to_tokens(qa.answer)] + [self.eos_id]
            seqs.append(prompt + answer)
            lab_starts.append(len(prompt))
        T = max(len(s) for s in seqs)
        B = len(seqs)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b, (s, st) in enumerate(zip(seqs, lab_starts)):
            input_ids[b, :len(s)] = torch.tensor(s)
            attn[b, :len(s)] = 1
            labels[b, st:len(s)] = torch.tensor(s[st:])
        slots = torch.from_numpy(np.stack([slot_labels(s) for s in scene_list]))
        relevance = torch.zeros((B, N_IMAGE_TOKENS))
        for b, (qa, i) in enumerate(zip(qas, img_idx)):
            for r in qa.refs:
                relevance[b, cell_of(scene_list[i].objects[r])] = 1.0
        pix = torch.from_numpy(np.stack([self.pixels(s) for s in scene_list])) if with_pixels else None
        return Batch(input_ids, attn, labels, slots, torch.tensor(img_idx), relevance, pix,
                     [qa.qtype for qa in qas], [qa.answer for qa in qas])
