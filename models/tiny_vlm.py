"""The embedded model's architecture, tokenizer and processor: a standard
LlavaForConditionalGeneration (small CLIP vision tower + small Llama) that
`AutoProcessor` / `AutoModelForImageTextToText` load like any real VLM.

Design choices (why):
- 64x64 input with 16-pixel patches: 16 image tokens, one per cell of the
  4x4 grid that simple scenes are laid out on, so each image token sees one
  whole object. That makes aligning vision with language a per-token task.
- The chat template puts the question *before* the image, so image tokens can
  attend to the question (the causal LM can mark which objects are asked
  about at each image token, and counting becomes reading a proportion).
- The assistant's turn (its answer and the end token) is marked with
  `{% generation %}`, so trainers that learn from answers only (TRL's
  `assistant_only_loss`, transformers' `return_assistant_tokens_mask`) can
  find it; rendering is unchanged.
- A word-level tokenizer built from the question templates; answer words are
  their own tokens ("I", "can't", "tell", uppercase glyphs), so every answer
  is one to three tokens.
"""
from __future__ import annotations

from tokenizers import Tokenizer, models as tk_models, normalizers, pre_tokenizers
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

from models import scenes
from models.scenes import questions as scene_questions
from models.scenes.phrasings import phrasing_words

IMAGE_SIZE = 64
PATCH = 16
N_IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "<|user|>", "<|assistant|>"]
CANT_TELL_TOKENS = ["I", "can't", "tell"]
OFF_TOPIC_NOUNS = ["dog", "cat", "car", "man", "woman", "tree", "house", "sun", "person", "bird", "table",
                   "sky", "building", "flower", "boat", "horse", "child", "phone", "book", "chair"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% endif %}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{% generation %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}</s>{% endgeneration %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Whitespace()


def _question_words() -> set[str]:
    """Every word the question templates (with all substitutions) and off-topic questions use."""
    texts: list[str] = []
    fills = {"shape": list(scenes.SHAPES) + OFF_TOPIC_NOUNS, "pl": list(scenes.SHAPE_PLURALS.values()),
             "color": list(scenes.COLORS), "ref": [], "ref2": []}
    refs = list(scenes.SHAPES) + [f"{c} object" for c in scenes.COLORS] + [f"{c} shape" for c in scenes.COLORS] \
        + [f"{c} one" for c in scenes.COLORS] + OFF_TOPIC_NOUNS
    # the template lists live in the questions module (the package itself holds only public names, and its
    # `__all__` / `__path__` are lists of strings that must not become words)
    for name, value in vars(scene_questions).items():
        if name.startswith("_") and not name.startswith("__") and isinstance(value, list) and value \
                and isinstance(value[0], str):
            texts += value
    texts += scenes.OFF_TOPIC + refs + scenes.example_questions() + ["colour color grey gray"]
    texts += list(fills["pl"]) + list(fills["color"])
    words: set[str] = set()
    pre = _pre_tokenizer()
    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            if "{" not in piece and "}" not in piece:
                words.add(piece)
    return words


def answer_tokens() -> list[str]:
    """Tokens that answers are made of (case-sensitive; generated, never typed)."""
    out = [str(i) for i in range(0, 11)] + list(scenes.COLORS) + list(scenes.SHAPES)
    out += ["yes", "no", "left", "right", "top", "bottom"] + list(scenes.GLYPHS) + CANT_TELL_TOKENS
    seen: list[str] = []
    for t in out:
        if t not in seen:
            seen.append(t)
    return seen


def write_answer_forms(out) -> None:
    """Declare the model's closed answer set next to its weights (answer_forms.json), so serving decodes
    only those answers (models.local): never a fragment like "I no"."""
    import json
    from pathlib import Path

    from models.scenes.answers import answer_forms

    (Path(out) / "answer_forms.json").write_text(json.dumps(sorted(answer_forms()), indent=0))


def answer_to_tokens(answer: str) -> list[str]:
    """The token sequence of a ground-truth answer (without the end token)."""
    if answer == scenes.CANT_TELL:
        return list(CANT_TELL_TOKENS)
    return [answer]


def build_tokenizer(phrasings: bool = True) -> PreTrainedTokenizerFast:
    """The word-level tokenizer: the template words, then the training phrasings' words appended (so a
    checkpoint trained on the templates alone keeps every id and only grows rows: models.phrasing)."""
    vocab_list = list(SPECIAL)
    words = answer_tokens() + sorted(_question_words())
    if phrasings:
        words += sorted(phrasing_words() - set(words))
    for w in words:
        if w not in vocab_list:
            vocab_list.append(w)
    vocab = {w: i for i, w in enumerate(vocab_list)}
    tok = Tokenizer(tk_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = _pre_tokenizer()
    tok.add_special_tokens(SPECIAL)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"}, model_max_length=128, padding_side="left",
    )
    return fast


def build_processor(tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaProcessor:
    tokenizer = tokenizer or build_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True, do_convert_rgb=True,
    )
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                          image_token="<image>", num_additional_image_tokens=1)


TEXT_HIDDEN, TEXT_LAYERS, TEXT_FF = 128, 4, 384
VISION_HIDDEN, VISION_LAYERS, VISION_FF = 192, 4, 512


def build_config(tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=VISION_HIDDEN,
                              intermediate_size=VISION_FF, num_hidden_layers=VISION_LAYERS, num_attention_heads=4,
                              projection_dim=VISION_HIDDEN)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=TEXT_FF,
                       num_hidden_layers=TEXT_LAYERS, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=256,
                       tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    cfg = LlavaConfig(vision_config=vision, text_config=text,
                      image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                      vision_feature_layer=-1, vision_feature_select_strategy="default",
                      image_seq_length=N_IMAGE_TOKENS, projector_hidden_act="gelu", tie_word_embeddings=True)
    cfg.pad_token_id = tokenizer.pad_token_id
    cfg.eos_token_id = tokenizer.eos_token_id
    return cfg


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    model = LlavaForConditionalGeneration(build_config(tokenizer))
    gc = model.generation_config
    gc.pad_token_id, gc.eos_token_id, gc.bos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id
    gc.max_new_tokens = 4
    gc.do_sample = False
    return model
