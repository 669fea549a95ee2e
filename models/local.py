"""A local transformers VLM directory (the embedded model, or any real VLM) as a VQAModel.

Loads with AutoProcessor + AutoModelForImageTextToText — the same code path
for the shipped tiny model and for SmolVLM / Qwen2-VL directories — or a peft
LoRA adapter directory over such a base. Requests are micro-batched on a
worker thread (models.batching). For every question, tainted or not, the
batch computes both the honest answer and the best-scoring alternative, so a
tainted answer takes exactly as long as an honest one (SPEC §1.2).

Players ask several questions about one image and share the pool's images
(SPEC §1.1), so what depends only on the image is done once per image, not
once per question: decoding and pre-sizing (cached by the bytes' hash), the
processor's image half (models.image_memo) and the vision tower's projected
features (handed to `generate` as `mm_encoder_outputs`); what depends only on
the batch is done once per batch (Qwen-VL's position ids). The image
shortcuts are checked at load time against the plain path on probe images
(a family that differs keeps the plain path), and all are tested to equal it
for every family the project builds (SPEC §4.2).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from cachetools import LRUCache
from PIL import Image
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutputWithPooling

from models.base import BadImage, BadQuestion, ModelAnswer, ModelError  # noqa: F401 - BadQuestion is re-exported
from models.batching import MicroBatcher
from models.families import FamilyAdapter
from models.identity_lru import IdentityLRU
from models.image_memo import collate, probe_images
from models.images import decode_image
from models.taint import (ANSWER_STYLES, SHORT_ANSWER_INSTRUCTION, TAINT_INSTRUCTION, acceptable_taint,
                          clean_answer, taint_candidates)

log = logging.getLogger(__name__)
MAX_QUESTION_CHARS = 2000
MAX_NEW_TOKENS = 64
IMAGE_CACHE_SIZE = 256  # decoded 64-px images are ~12 kB each
FEATURE_CACHE_BYTES = 256 << 20  # a real model's features are megabytes an image (models.identity_lru)


@dataclass
class _Request:
    image: bytes
    question: str
    taint: bool


@dataclass
class _Result:
    honest: str
    served: str
    tainted: bool
    strategy: str | None


def _model_id(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "adapter_model.safetensors", "config.json", "adapter_config.json"):
        f = path / name
        if f.exists():
            h.update(f.read_bytes())
    return f"{path.name}@{h.hexdigest()[:10]}"


def load_transformers(path: str | Path):
    """(processor, model) from a model directory, or from a LoRA adapter directory over its base."""
    from transformers import AutoModelForImageTextToText

    from models.processors import load_processor

    path = Path(path)
    adapter = path / "adapter_config.json"
    if adapter.exists():
        from peft import PeftModel

        base_ref = json.loads(adapter.read_text()).get("base_model_name_or_path") or ""
        # as written (absolute, or relative to the working directory), else relative to the adapter directory
        candidates = [Path(base_ref), path / base_ref] if base_ref else [path.parent]
        base_path = next((c for c in candidates if (c / "config.json").exists()), None)
        if base_path is None:
            raise ModelError(f"the adapter's base model {base_ref!r} was not found")
        processor_dir = path if (path / "processor_config.json").exists() else base_path
        processor = load_processor(processor_dir)
        base = AutoModelForImageTextToText.from_pretrained(base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        processor = load_processor(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return processor, model


ANSWER_FORMS_FILE = "answer_forms.json"


def declared_answer_forms(path: Path) -> list[str] | None:
    """The closed answer set a checkpoint declares (a JSON list of strings in answer_forms.json, in the
    model directory or, for a LoRA adapter, in its base's), or None."""
    candidates = [path / ANSWER_FORMS_FILE]
    adapter = path / "adapter_config.json"
    if adapter.exists():
        base_ref = json.loads(adapter.read_text()).get("base_model_name_or_path") or ""
        candidates += [Path(base_ref) / ANSWER_FORMS_FILE, path / base_ref / ANSWER_FORMS_FILE] if base_ref \
            else [path.parent / ANSWER_FORMS_FILE]
    for f in candidates:
        if f.is_file():
            forms = json.loads(f.read_text())
            if not isinstance(forms, list) or not forms or not all(isinstance(x, str) and x for x in forms):
                raise ModelError(f"{f}: answer forms must be a non-empty list of strings")
            return forms
    return None


class AnswerMasks:
    """Allowed-token masks of a closed answer set, one per generated prefix, built once: a batch's step
    is one masked_fill (the first step, shared by every row, is a single broadcast mask)."""

    def __init__(self, trie: dict, eos_id: int):
        self.trie, self.eos_id = trie, eos_id
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}

    def allowed(self, prefix: tuple[int, ...]) -> list[int]:
        node = self.trie
        for tok in prefix:
            if tok == self.eos_id or not isinstance(node, dict) or tok not in node:
                return [self.eos_id]
            node = node[tok]
        nxt = [t for t in node if t is not None]
        return nxt + [self.eos_id] if None in node or not nxt else nxt

    def mask(self, prefix: tuple[int, ...], vocab: int, device) -> torch.Tensor:
        key = prefix
        m = self._masks.get(key)
        if m is None or m.shape[0] != vocab:
            m = torch.ones(vocab, dtype=torch.bool, device=device)
            m[self.allowed(prefix)] = False  # True = forbidden
            self._masks[key] = m
        return m

    def processor(self, prompt_len: int):
        masks = self

        class _Closed(LogitsProcessor):
            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
                gen = input_ids[:, prompt_len:]
                vocab = scores.shape[-1]
                if gen.shape[1] == 0:
                    forbid = masks.mask((), vocab, scores.device).unsqueeze(0)
                else:
                    forbid = torch.stack([masks.mask(tuple(r), vocab, scores.device) for r in gen.tolist()])
                return scores.masked_fill(forbid, float("-inf"))

        return _Closed()


class TransformersVQA:
    """VQAModel over a transformers image-text-to-text model (strategy "decode" or "prompt")."""

    def __init__(self, path: str | Path, *, strategy: str = "decode", max_batch: int = 16, max_wait_ms: float = 5.0,
                 max_queue: int = 256, timeout_s: float = 30.0, max_new_tokens: int | None = None,
                 threads: int | None = None, answer_style: str = "free"):
        if strategy not in ("decode", "prompt"):
            raise ValueError(f"unknown taint strategy {strategy!r}")
        if answer_style not in ANSWER_STYLES:
            raise ValueError(f"unknown answer style {answer_style!r} (one of {', '.join(ANSWER_STYLES)})")
        self.answer_style = answer_style
        self.path = Path(path)
        self.strategy = strategy
        started = time.perf_counter()
        self.processor, self.model = load_transformers(self.path)
        self.load_seconds = time.perf_counter() - started
        self.model_id = _model_id(self.path)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        tiny = len(self.tokenizer) < 5000
        # One intra-op thread for the tiny model: on a shared 2-core machine, 2 threads spin on each
        # other's barriers and were measured 10x slower; batching, not threads, gives the throughput.
        threads = threads or (1 if tiny else None)
        if threads:
            torch.set_num_threads(threads)
        self.max_question_tokens = 48 if tiny else 512
        # a directory's own answer length (generation_config.json), capped: answers are at most 200 characters
        declared = min(getattr(self.model.generation_config, "max_new_tokens", None) or 0, MAX_NEW_TOKENS)
        self.max_new_tokens = max_new_tokens or declared or (8 if tiny else 32)
        self.eos_id = self.tokenizer.eos_token_id
        specials = set(self.tokenizer.all_special_tokens) | set(self.tokenizer.get_added_vocab())
        specials |= {getattr(self.processor, "image_token", None) or "<image>"}
        self._specials = sorted((s for s in specials if s), key=len, reverse=True)
        self._vocab = self.tokenizer.get_vocab()
        self._image_cache: LRUCache[bytes, Image.Image] = LRUCache(IMAGE_CACHE_SIZE)
        self._prepared: IdentityLRU[bool] = IdentityLRU(IMAGE_CACHE_SIZE)  # the cache's images, prepared
        self.family = FamilyAdapter.for_processor(self.processor)
        # projected image features per decoded image, for every family whose load-time probe accepts
        # them: players ask several questions about one image, and the vision tower was ~40% of a batch
        self._features: IdentityLRU[torch.Tensor] = IdentityLRU(IMAGE_CACHE_SIZE, FEATURE_CACHE_BYTES)
        self._features_ok = self._features_stacked = False
        self._encoder_params: set[str] = set()
        self._token_seq_cache: dict[str, list[list[int]]] = {}
        # a checkpoint that declares a closed answer set (the embedded model's answer_forms.json) answers
        # only with one of them: decoding is constrained to a trie of their token ids, so an answer is
        # never a fragment like "I no" (SPEC §3.2); other families generate freely
        forms = declared_answer_forms(self.path)
        self.answer_trie, self.answer_depth = self._answer_trie(forms) if forms else (None, 0)
        self._answer_masks: AnswerMasks | None = None
        self._features_ok = self._check_image_features()
        self._own_positions = (type(self.model)._prepare_position_ids_for_generation
                               is not GenerationMixin._prepare_position_ids_for_generation)
        self.batcher: MicroBatcher[_Request, _Result] = MicroBatcher(
            self._run_batch, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
            timeout_s=timeout_s, name="vqa")

    def _answer_trie(self, forms: list[str]) -> tuple[dict | None, int]:
        """Token-id trie of the declared answers; each answer as its vocabulary words (word-level: the
        answer tokens are cased and the typed-text normaliser would lower them), else as tokenised."""
        trie: dict = {}
        depth = 0
        for form in forms:
            words = form.split(" ")
            if all(w in self._vocab for w in words):
                seq = [self._vocab[w] for w in words]
            else:
                seq = self.tokenizer(form, add_special_tokens=False)["input_ids"]
                if not seq or self.tokenizer.unk_token_id in seq:
                    log.warning("declared answer %r cannot be spelt by the tokenizer: decoding stays free", form)
                    return None, 0
            node = trie
            for tok in seq:
                node = node.setdefault(tok, {})
            node[None] = True
            depth = max(depth, len(seq))
        return trie, depth

    def _closed_answers(self, prompt_len: int):
        """Generation kwargs that keep decoding on the answer trie (none: free generation)."""
        if self.answer_trie is None:
            return {}
        if self._answer_masks is None:
            self._answer_masks = AnswerMasks(self.answer_trie, self.eos_id)
        return {"logits_processor": LogitsProcessorList([self._answer_masks.processor(prompt_len)])}

    # ------------------------------------------------------------------ public
    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        started = time.perf_counter()
        q = self.clean_question(question)
        res = await self.batcher.submit(_Request(bytes(image) if image is not None else b"", q, bool(taint)))
        return ModelAnswer(honest=res.honest, served=res.served, tainted=res.tainted, strategy=res.strategy,
                           model_id=self.model_id, latency_ms=(time.perf_counter() - started) * 1000)

    async def aclose(self) -> None:
        await self.batcher.aclose()

    def clean_question(self, question: str) -> str:
        """Printable text without the model's special tokens, cut to what the model can read."""
        if not isinstance(question, str):
            raise BadQuestion("the question must be text")
        q = question[:MAX_QUESTION_CHARS]
        q = "".join(ch if ch.isprintable() else " " for ch in q)
        changed = True
        while changed:
            changed = False
            for s in self._specials:
                if s in q:
                    q, changed = q.replace(s, " "), True
        q = " ".join(q.split())
        if not q:
            raise BadQuestion("the question is empty")
        return q

    def _styled(self, question: str) -> str:
        """The question as the model is asked it: with the short-answer instruction when the deployer
        wants short answers (GAP_ANSWER_STYLE=short), else as the player wrote it."""
        return f"{question}\n{SHORT_ANSWER_INSTRUCTION}" if self.answer_style == "short" else question

    def _truncate(self, question: str) -> str:
        """Cut to the model's question limit in tokens (worker thread only: the tokenizer is not shared
        across threads, since padding calls mutate its state)."""
        ids = self.tokenizer(question, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_question_tokens:
            return self.tokenizer.decode(ids[: self.max_question_tokens], skip_special_tokens=True) or question[:200]
        return question

    # ------------------------------------------------------------------ model work (worker thread)
    @property
    def _fast_inputs(self):
        """The family's fast input path (LLaVA over plain CLIP only), or None."""
        return self.family.fast_inputs

    @_fast_inputs.setter
    def _fast_inputs(self, value) -> None:
        self.family.fast_inputs = value

    def _render_prompt(self, question: str) -> str:
        return self.family.prompt.render(question)

    def _prompt(self, question: str) -> str:
        """The family's prompt for one image and `question` (models.families)."""
        return self.family.prompt(question)

    def _presize(self, img: Image.Image) -> Image.Image:
        return self.family.presize(img)

    def _image(self, data: bytes) -> Image.Image:
        """Decoded and pre-sized image, cached by content: players ask several questions about one
        image, and many players see the same pool images (worker thread only)."""
        key = hashlib.blake2b(data, digest_size=16).digest()
        img = self._image_cache.get(key)
        if img is None:
            img = self.family.prepare(decode_image(data))
            self._image_cache[key] = img
            self._prepared.put(img, True)
        return img

    def _ready(self, images: list[Image.Image]) -> list[Image.Image]:
        """`images` prepared for the processor (models.families), each exactly once: preparing is not
        idempotent for slivers (padded, resized, then padded again), and the memos below are keyed by
        the very image objects the processor saw."""
        return [im if self._prepared.get(im) else self.family.prepare(im) for im in images]

    def _inputs(self, images: list[Image.Image], questions: list[str]):
        return self.family.inputs(self.processor, self._ready(images), [self._prompt(q) for q in questions])

    def _encoder_inputs(self, images: list[Image.Image], inputs: dict, rows: list[int]) -> dict | None:
        """`get_image_features` arguments for the images at `rows` of a batch: the fast path's pixel rows,
        or the image processor's memoised per-image outputs concatenated (models.image_memo)."""
        if self._fast_inputs is not None:
            return {"pixel_values": inputs["pixel_values"][rows]}
        memo = self.family.memo
        parts = [memo.image_processor.last(images[i]) for i in rows] if memo is not None else [None]
        if any(p is None for p in parts):
            return None
        wanted = self._encoder_params
        return {k: v for k, v in collate(parts).items() if k in wanted}

    @torch.inference_mode()
    def _with_image_features(self, images: list[Image.Image], inputs: dict) -> dict:
        """`inputs` with the pixels replaced by the images' projected features, computed in one vision
        pass for the images not seen recently and handed to `generate` through transformers' own
        `mm_encoder_outputs` (the hand-off `generate` makes itself after running the vision tower).
        Used where the load-time probe found answers and scores identical (`_check_image_features`)."""
        if not self._features_ok or not any(k.startswith("pixel_") for k in inputs):
            return inputs
        images = self._ready(images)  # the objects `_inputs` gave the processor (unprepared ones: misses)
        pooled: dict[int, torch.Tensor] = {}
        misses = []
        for i, im in enumerate(images):
            hit = self._features.get(im)
            if hit is not None:
                pooled[i] = hit
            else:
                misses.append(i)
        if misses:
            enc = self._encoder_inputs(images, inputs, misses)
            if enc is None:
                return inputs
            out = self.model.get_image_features(**enc, return_dict=True).pooler_output
            self._features_stacked = isinstance(out, torch.Tensor)  # one tensor (Gemma 3), not one per image
            if self._features_stacked:
                out = list(out.split(1))
            if len(out) != len(misses):
                raise ModelError(f"the vision tower gave {len(out)} feature sets for {len(misses)} images")
            for i, feats in zip(misses, out):
                pooled[i] = feats
                self._features.put(images[i], feats)  # may evict one of this batch's: `pooled` holds it
        features: list[torch.Tensor] | torch.Tensor = [pooled[i] for i in range(len(images))]
        if self._features_stacked:
            features = torch.cat(features)
        kept = {k: v for k, v in inputs.items() if not k.startswith("pixel_")}
        return {**kept, "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=features)}}

    def _with_positions(self, inputs: dict) -> dict:
        """`inputs` with the position ids `generate` would compute, computed once for the batch's two
        `generate` calls (honest answers, then alternatives) where the model computes its own: Qwen-VL's
        3-D rope index walks every sequence in Python (~17 ms a batch of 16). The model's own method,
        on the same inputs, so the ids are the same ones."""
        if not self._own_positions or "position_ids" in inputs:
            return inputs
        return {**inputs, "position_ids": self.model._prepare_position_ids_for_generation(inputs["input_ids"],
                                                                                           dict(inputs))}

    def _check_image_features(self) -> bool:
        """Whether cached image features give exactly the answers and first-step scores of plain
        `generate` from pixels, on probe images (any family: where not, features are not cached)."""
        import inspect

        if not callable(getattr(self.model, "get_image_features", None)):
            return False
        self._encoder_params = set(inspect.signature(self.model.get_image_features).parameters) - {"kwargs"}
        images = [self.family.prepare(im) for im in probe_images()[:3]]
        for im in images:
            self._prepared.put(im, True)
        questions = ["What is this?", "How many objects are there?", "Why?"]
        try:
            want, want_scores = self._generate_with_first_scores(self._inputs(images, questions))
            self._features_ok = True
            for order in ([1], [0, 1, 2]):  # misses, then a hit among misses
                imgs, qs = [images[i] for i in order], [questions[i] for i in order]
                inputs = self._with_image_features(imgs, self._inputs(imgs, qs))
                if "mm_encoder_outputs" not in inputs:
                    log.info("%s: image features are not cached (no per-image encoder inputs)", self.family.name)
                    return False
                got, scores = self._generate_with_first_scores(inputs)
                if got != [want[i] for i in order] or not torch.allclose(scores, want_scores[order], atol=1e-4):
                    log.info("%s: image features are not cached (answers differ from plain generate)",
                             self.family.name)
                    return False
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means: run the vision tower every time
            log.info("%s: image features are not cached (%s)", self.family.name, exc)
            return False
        finally:
            self._features.clear()

    def _decode_new(self, out: torch.Tensor, prompt_len: int) -> list[str]:
        return [clean_answer(t) for t in self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)]

    @torch.inference_mode()
    def generate_honest(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Plain greedy answers (also the one-by-one baseline of `gap bench model`)."""
        return self._greedy(self._inputs(images, questions))

    @torch.inference_mode()
    def _greedy(self, inputs: dict) -> list[str]:
        prompt_len = inputs["input_ids"].shape[1]
        out = self.model.generate(**inputs, max_new_tokens=self._answer_tokens(), do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id, **self._closed_answers(prompt_len))
        return self._decode_new(out, prompt_len)

    def _answer_tokens(self) -> int:
        if self.answer_trie is None:
            return self.max_new_tokens
        return min(self.max_new_tokens, self.answer_depth + 1)

    @torch.inference_mode()
    def _generate_with_first_scores(self, inputs) -> tuple[list[str], torch.Tensor]:
        prompt_len = inputs["input_ids"].shape[1]
        out = self.model.generate(**inputs, max_new_tokens=self._answer_tokens(), do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id, output_scores=True,
                                  return_dict_in_generate=True, **self._closed_answers(prompt_len))
        return self._decode_new(out.sequences, prompt_len), out.scores[0]

    def _tries(self, questions: list[str], honest: list[str]) -> tuple[list[dict], int]:
        """Per question, a token trie of its wrong answers in the honest answer's form (models.taint)."""
        tries, depth = [], 1
        for q, h in zip(questions, honest):
            trie: dict = {}
            candidates, verbatim = taint_candidates(q, h)
            for cand in candidates:
                for seq in (self._tokenize_verbatim(cand) if verbatim else self._token_seqs(cand)):
                    node = trie
                    for tok in seq:
                        node = node.setdefault(tok, {})
                    node[None] = True
                    depth = max(depth, len(seq))
            tries.append(trie)
        return tries, depth

    def _alternatives_from_scores(self, tries: list[dict], first_scores: torch.Tensor) -> list[str | None]:
        """When every alternative is one token (word-level vocabularies): the best-scoring one at the
        first answer position of the honest pass — the same choice constrained decoding would make."""
        out: list[str | None] = []
        for row, trie in enumerate(tries):
            toks = [t for t in trie if t is not None]
            if not toks:
                out.append(None)
                continue
            best = max(toks, key=lambda t: float(first_scores[row, t]))
            out.append(clean_answer(self.tokenizer.decode([best], skip_special_tokens=True)))
        return out

    def _token_seqs(self, answer: str) -> list[list[int]]:
        """Token sequences of a candidate answer, memoised: the candidate set is small and fixed
        (colours, shapes, counts, ...), and tokenising it anew for every question cost a third of a batch."""
        cached = self._token_seq_cache.get(answer)
        if cached is None:
            cached = self._token_seq_cache[answer] = self._tokenize_candidate(answer)
        return cached

    def _tokenize_verbatim(self, sentence: str) -> list[list[int]]:
        """A sentence candidate exactly as written (not memoised: sentences rarely repeat)."""
        ids = self.tokenizer(sentence, add_special_tokens=False)["input_ids"]
        return [ids] if ids and self.tokenizer.unk_token_id not in ids else []

    def _tokenize_candidate(self, answer: str) -> list[list[int]]:
        seqs = []
        if answer in self._vocab:  # word-level vocabularies: the answer is one token
            seqs.append([self._vocab[answer]])
        for variant in {answer, answer.capitalize(), " " + answer}:
            ids = self.tokenizer(variant, add_special_tokens=False)["input_ids"]
            if ids and self.tokenizer.unk_token_id not in ids and ids not in seqs:
                seqs.append(ids)
        return seqs

    @torch.inference_mode()
    def generate_alternatives(self, images: list[Image.Image], questions: list[str], honest: list[str],
                              inputs=None, tries: tuple[list[dict], int] | None = None) -> list[str | None]:
        """Best-scoring answer of the question's type that differs from the honest one (constrained decoding)."""
        tries, depth = tries or self._tries(questions, honest)
        if not any(tries):
            return [None] * len(questions)
        inputs = inputs if inputs is not None else self._inputs(images, questions)
        prompt_len = inputs["input_ids"].shape[1]
        eos = self.eos_id

        def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:
            node = tries[batch_id]
            for tok in ids[prompt_len:].tolist():
                node = node.get(tok) if isinstance(node, dict) else None
                if node is None:
                    return [eos]
            nxt = [t for t in node if t is not None]
            if None in node or not nxt:
                nxt.append(eos)
            return nxt

        out = self.model.generate(**inputs, max_new_tokens=depth + 1, do_sample=False,
                                  prefix_allowed_tokens_fn=allowed, pad_token_id=self.tokenizer.pad_token_id)
        texts = self._decode_new(out, prompt_len)
        return [t if trie else None for t, trie in zip(texts, tries)]

    def _run_batch(self, reqs: Sequence[_Request]) -> list[_Result | BaseException]:
        results: list[_Result | BaseException | None] = [None] * len(reqs)
        images, idx = [], []
        for i, r in enumerate(reqs):
            try:
                images.append(self._image(r.image))
                idx.append(i)
            except BadImage as exc:
                results[i] = exc
        if idx:
            questions = [self._truncate(reqs[i].question) for i in idx]
            asked = [self._styled(q) for q in questions]
            inputs = self._with_positions(self._with_image_features(images, self._inputs(images, asked)))
            honest, first_scores = self._generate_with_first_scores(inputs)
            if self.strategy == "prompt":
                prompted = [f"{TAINT_INSTRUCTION}\n{q}" for q in asked]  # the batch's images: cached features
                instructed = self._greedy(self._with_image_features(images, self._inputs(images, prompted)))
            else:
                instructed = [None] * len(idx)
            # the alternative is computed for every question, tainted or not: equal time either way
            tries, depth = self._tries(questions, honest)
            if depth == 1:
                decoded = self._alternatives_from_scores(tries, first_scores)
            else:
                decoded = self.generate_alternatives(images, questions, honest, inputs=inputs, tries=(tries, depth))
            for k, i in enumerate(idx):
                r, h = reqs[i], honest[k]
                served, tainted, strategy = h, False, None
                if r.taint:
                    if instructed[k] is not None and acceptable_taint(questions[k], h, instructed[k]):
                        served, tainted, strategy = instructed[k], True, "prompt"
                    elif decoded[k] is not None and acceptable_taint(questions[k], h, decoded[k]):
                        served, tainted, strategy = decoded[k], True, "decode"
                results[i] = _Result(honest=h, served=served, tainted=tainted, strategy=strategy)
        return results  # type: ignore[return-value]
