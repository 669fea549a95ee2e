"""A deterministic VLM that answers in sentences, saved as a model directory the product loads.

Why: the answer-style test needs a model whose honest answers are sentences
("There are three circles.") and whose taint goes through the real serving
path — `load_model`, the micro-batcher, `generate`, and constrained decoding
over the candidate sentences. A random tiny model answers in noise, and no
trained sentence model can be downloaded, so this one is written out: a
transformers `PreTrainedModel` (registered with the Auto classes like any
custom architecture) whose next-token logits spell a sentence chosen from the
question's text, plus small deterministic noise that decides between the
alternatives constrained decoding allows. It uses the tiny Idefics3 family's
processor (chat template, image tokens) unchanged.
"""
from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForImageTextToText, GenerationMixin, PretrainedConfig,
                          PreTrainedModel, PreTrainedTokenizerFast)
from transformers.modeling_outputs import CausalLMOutput

from models.question_types import family, fine_type
from models.scenes import COLORS, SHAPES, SHAPE_PLURALS
from models.taint import SHORT_ANSWER_INSTRUCTION, answer_span

MODEL_TYPE = "gap_test_sentence_vlm"
MARKER = "Assistant:"
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def honest_sentence(question: str) -> str:
    """The model's answer: a sentence of a form and value chosen by a hash of the question — or, when
    the question asks for a single word or phrase (GAP_ANSWER_STYLE=short), the bare answer."""
    if SHORT_ANSWER_INSTRUCTION in question:
        question = question.replace(SHORT_ANSWER_INSTRUCTION, "").strip()
        sentence = honest_sentence(question)
        span = answer_span(question, sentence)
        return sentence[span[0]:span[1]] if span else sentence
    rng = random.Random(hashlib.sha256(question.encode()).digest())
    qtype = fine_type(question)
    kind = family(qtype)
    shape = next((s for s in SHAPES if s in question.lower()), "object")
    plural = SHAPE_PLURALS.get(shape, "objects")
    if kind == "count":
        n = rng.randrange(11)
        value = str(n) if rng.random() < 0.5 else NUMBER_WORDS[n]
        noun, verb = (shape, "is") if n == 1 else (plural, "are")
        return rng.choice([f"There {verb} {value} {noun}.", f"I can see {value} {noun} in the image.",
                           f"I count {value}.", f"{value.capitalize()} {noun}."])
    if kind == "color":
        c = rng.choice(list(COLORS))
        return rng.choice([f"The {shape} is {c}.", f"It is {c}.", f"The colour of the {shape} is {c}.",
                           f"{c.capitalize()}."])
    if qtype in ("position_lr", "position_tb"):
        side = rng.choice(["left", "right"] if qtype == "position_lr" else ["top", "bottom"])
        return rng.choice([f"It is on the {side}.", f"The {shape} is at the {side} of the image.",
                           f"{side.capitalize()}."])
    if kind == "shape":
        return rng.choice([f"It is a {rng.choice(SHAPES)}.", f"That is a {rng.choice(SHAPES)}."])
    if kind == "exists" or qtype == "relation":
        yes = rng.random() < 0.5
        return rng.choice([f"{'Yes' if yes else 'No'}, there is.", f"{'Yes' if yes else 'No'}.",
                           f"{'Yes' if yes else 'No'}, I think so."])
    return "I am not sure what you mean."


class SentenceVLMConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 1000, noise: float = 1.0, **kwargs):
        self.vocab_size = vocab_size
        self.noise = noise
        super().__init__(**kwargs)


class SentenceVLM(PreTrainedModel, GenerationMixin):
    """Next-token logits that spell `honest_sentence(question)`; stateless (no cache)."""

    config_class = SentenceVLMConfig
    main_input_name = "input_ids"

    def __init__(self, config: SentenceVLMConfig):
        super().__init__(config)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a weight, so the directory saves and loads
        self._tokenizer: PreTrainedTokenizerFast | None = None
        self._targets: dict[tuple[int, ...], list[int]] = {}
        self._lengths: set[int] = set()
        self.post_init()

    @property
    def tokenizer(self) -> PreTrainedTokenizerFast:
        if self._tokenizer is None:
            self._tokenizer = PreTrainedTokenizerFast.from_pretrained(self.config.name_or_path)
        return self._tokenizer

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, pixel_values=None,
                                      pixel_attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _target(self, ids: list[int]) -> list[int]:
        """The answer's token ids (and the end token) for one row's prompt "User:<question>\nAssistant:"."""
        tok = self.tokenizer
        text = tok.decode(ids, skip_special_tokens=True)
        question = text[:text.rindex(MARKER)].split("User:", 1)[-1].strip()
        return tok(honest_sentence(question), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, pixel_attention_mask: torch.Tensor | None = None,
                **kwargs) -> CausalLMOutput:
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.config.vocab_size)
        for row in range(batch):
            ids = input_ids[row].tolist()
            if attention_mask is not None:
                ids = [t for t, m in zip(ids, attention_mask[row].tolist()) if m]
            key = tuple(ids)
            # the prompt is the longest prefix seen before; the answer so far is the rest
            prompt = next((key[:n] for n in sorted(self._lengths, reverse=True) if key[:n] in self._targets), None)
            if prompt is None:
                self._targets[key] = self._target(ids)
                self._lengths.add(len(key))
                prompt = key
            target = self._targets[prompt]
            step = len(ids) - len(prompt)
            seed = int.from_bytes(hashlib.sha256(repr((prompt, step)).encode()).digest()[:4], "big")
            gen = torch.Generator().manual_seed(seed)
            logits[row, -1] = self.config.noise * torch.rand(self.config.vocab_size, generator=gen)
            logits[row, -1, target[min(step, len(target) - 1)]] += 10.0
        return CausalLMOutput(logits=logits + 0 * self.anchor)


AutoConfig.register(MODEL_TYPE, SentenceVLMConfig)
AutoModelForImageTextToText.register(SentenceVLMConfig, SentenceVLM)


def build_sentence_model(processor_dir: Path, out: Path) -> Path:
    """A model directory: the processor files of `processor_dir` (a tiny Idefics3) and the sentence model."""
    out.mkdir(parents=True, exist_ok=True)
    for f in processor_dir.iterdir():
        if f.is_file() and f.name not in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(f, out / f.name)
    tok = PreTrainedTokenizerFast.from_pretrained(processor_dir)
    model = SentenceVLM(SentenceVLMConfig(vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                                          pad_token_id=tok.pad_token_id))
    gc = model.generation_config
    gc.eos_token_id, gc.pad_token_id, gc.use_cache, gc.max_new_tokens = tok.eos_token_id, tok.pad_token_id, False, 24
    model.save_pretrained(out)
    return out
