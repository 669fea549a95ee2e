"""Tiny random-weight models of popular VLM families, built offline from transformers' own classes.

Why: SPEC §4.2 promises that any popular VLM family transformers loads works as
`GAP_MODEL=DIR`. No model hub is reachable from tests or CI, so each family is
built here from its transformers config and processor classes, with a BPE
tokenizer trained locally (`tokenizers`) and the family's usual chat template,
then saved as a model directory — the same files a downloaded checkpoint has.
The weights are random and a few kilobytes of hidden size, so a whole family
loads and answers in about a second; the answers are noise, but every piece of
the serving path (processor, chat template, image tokens, batching, both taint
strategies) is the real one. Used by the family tests and `gap bench model`.

    >>> from lab.tiny_families import build_family
    >>> path = build_family("qwen2_vl", "/tmp/tiny-qwen2-vl")   # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tokenizers import Tokenizer, decoders, models as tk_models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from models import scenes
from models.processors import image_only

HIDDEN, HEADS, LAYERS, FF = 32, 2, 2, 64
VISION_HIDDEN, VISION_LAYERS, VISION_FF = 32, 1, 64


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: the game's questions, answers and answer sentences."""
    words = [str(i) for i in range(11)] + list(scenes.COLORS) + list(scenes.SHAPES)
    words += ["yes", "no", "left", "right", "top", "bottom", "zero", "one", "two", "three", "four", "five",
              "six", "seven", "eight", "nine", "ten", "I can't tell."]
    sentences = [f"There are {w} objects." for w in words] + [f"The answer is {w}." for w in words]
    sentences += ["Yes, there is.", "No, there is not.", "It is on the left.", "It is at the bottom."]
    return scenes.example_questions() * 2 + words * 4 + sentences + ["You are a helpful assistant."]


def train_tokenizer(specials: list[str], *, extra: dict[str, str] | None = None, bos: str | None = None,
                    eos: str = "<eos>", pad: str = "<pad>", unk: str | None = None,
                    vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the game's text, with `specials` as special tokens
    (byte level: any question or answer text tokenizes, with no unknown token)."""
    tok = Tokenizer(tk_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    names = [t for t in [pad, eos, bos, unk] if t] + [s for s in specials if s not in (pad, eos, bos, unk)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=names,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos, bos_token=bos,
                                   unk_token=unk, extra_special_tokens=extra or {}, padding_side="left",
                                   model_max_length=4096)


def _content_loop(image: str, text: str = "{{ c['text'] }}") -> str:
    return ("{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + image +
            "{% elif c['type'] == 'text' %}" + text + "{% endif %}{% endfor %}{% endif %}")


QWEN_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    + _content_loop("<|vision_start|><|image_pad|><|vision_end|>") +
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    + _content_loop("{{ '<image>' }}") +
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
LLAVA_TEMPLATE = (  # llava-1.5-hf's: "USER: <image>\n{question} ASSISTANT:"
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    + _content_loop("{{ '<image>\n' }}", "{{ c['text'] + ' ' }}") +
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
CHATML_IMAGE_TEMPLATE = (  # llava-onevision-qwen2's
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    + _content_loop("{{ '<image>\n' }}") +
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}" + _content_loop("{{ '<start_of_image>' }}") +
    "{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")


def _text_kwargs(tokenizer: PreTrainedTokenizerFast) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=FF, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=4096,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id)


def _siglip(image_size: int, patch: int) -> dict:
    return dict(model_type="siglip_vision_model", hidden_size=VISION_HIDDEN, intermediate_size=VISION_FF,
                num_hidden_layers=VISION_LAYERS, num_attention_heads=HEADS, image_size=image_size, patch_size=patch)


@dataclass
class Built:
    processor: object
    model: torch.nn.Module


def _qwen(version: str) -> Built:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil, Qwen2VLProcessor

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = train_tokenizer(specials, eos="<|im_end|>", pad="<|endoftext|>")
    ip = Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2,
                                  min_pixels=16 * 16, max_pixels=64 * 64)
    processor = image_only(Qwen2VLProcessor if version == "2" else Qwen2_5_VLProcessor)(
        image_processor=ip, tokenizer=tok, chat_template=QWEN_TEMPLATE)
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in [("image_token_id", "<|image_pad|>"),
                                                       ("video_token_id", "<|video_pad|>"),
                                                       ("vision_start_token_id", "<|vision_start|>"),
                                                       ("vision_end_token_id", "<|vision_end|>")]}
    text = dict(_text_kwargs(tok), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                    "mrope_section": [4, 2, 2]})
    if version == "2":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        vision = dict(depth=VISION_LAYERS, embed_dim=VISION_HIDDEN, hidden_size=HIDDEN, num_heads=HEADS,
                      patch_size=8, spatial_merge_size=2, temporal_patch_size=2, mlp_ratio=2)
        cfg = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        return Built(processor, Qwen2VLForConditionalGeneration(cfg))
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vision = dict(depth=VISION_LAYERS, hidden_size=VISION_HIDDEN, out_hidden_size=HIDDEN, num_heads=HEADS,
                  intermediate_size=VISION_FF, patch_size=8, spatial_merge_size=2, temporal_patch_size=2,
                  window_size=32, fullatt_block_indexes=[0])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    return Built(processor, Qwen2_5_VLForConditionalGeneration(cfg))


def _idefics3() -> Built:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor

    specials = ["<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"]
    specials += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = train_tokenizer(specials, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>")
    ip = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                   do_image_splitting=True)
    image_seq_len = (32 // 8) ** 2 // 4
    processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=image_seq_len,
                                  chat_template=IDEFICS3_TEMPLATE)
    vision = dict(hidden_size=VISION_HIDDEN, intermediate_size=VISION_FF, num_hidden_layers=VISION_LAYERS,
                  num_attention_heads=HEADS, image_size=32, patch_size=8)
    cfg = Idefics3Config(text_config=dict(_text_kwargs(tok), model_type="llama"), vision_config=vision,
                         image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    return Built(processor, Idefics3ForConditionalGeneration(cfg))


def _smolvlm() -> Built:
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil, SmolVLMProcessor

    specials = ["<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>",
                "<video>"]
    specials += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = train_tokenizer(specials, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>")
    ip = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                  do_image_splitting=True)
    processor = image_only(SmolVLMProcessor)(image_processor=ip, tokenizer=tok,
                                             image_seq_len=(32 // 8) ** 2 // 4, chat_template=IDEFICS3_TEMPLATE)
    vision = dict(hidden_size=VISION_HIDDEN, intermediate_size=VISION_FF, num_hidden_layers=VISION_LAYERS,
                  num_attention_heads=HEADS, image_size=32, patch_size=8)
    cfg = SmolVLMConfig(text_config=dict(_text_kwargs(tok), model_type="llama"), vision_config=vision,
                        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    return Built(processor, SmolVLMForConditionalGeneration(cfg))


def _llava() -> Built:
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = train_tokenizer(["<image>"], bos="<s>", eos="</s>", pad="<pad>", extra={"image_token": "<image>"})
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=LLAVA_TEMPLATE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=VISION_FF, num_hidden_layers=VISION_LAYERS,
                              num_attention_heads=HEADS, image_size=32, patch_size=8, projection_dim=VISION_HIDDEN)
    cfg = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**_text_kwargs(tok)),
                      image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                      vision_feature_select_strategy="default", image_seq_length=16)
    return Built(processor, LlavaForConditionalGeneration(cfg))


def _llava_onevision() -> Built:
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor)

    specials = ["<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = train_tokenizer(specials, eos="<|im_end|>", pad="<|endoftext|>",
                          extra={"image_token": "<image>", "video_token": "<video>"})
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    processor = image_only(LlavaOnevisionProcessor)(image_processor=ip, tokenizer=tok,
                                                    num_image_tokens=16, vision_feature_select_strategy="full",
                                        chat_template=CHATML_IMAGE_TEMPLATE)
    cfg = LlavaOnevisionConfig(text_config=dict(_text_kwargs(tok), model_type="qwen2"), vision_config=_siglip(32, 8),
                               image_token_index=tok.convert_tokens_to_ids("<image>"),
                               video_token_index=tok.convert_tokens_to_ids("<video>"),
                               image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full")
    return Built(processor, LlavaOnevisionForConditionalGeneration(cfg))


def _gemma3() -> Built:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    specials = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    tok = train_tokenizer(specials, bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
                          extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"})
    ip = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    processor = Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=GEMMA3_TEMPLATE)
    text = dict(_text_kwargs(tok), head_dim=16, query_pre_attn_scalar=16, sliding_window=64)
    cfg = Gemma3Config(text_config=text, vision_config=_siglip(32, 8), mm_tokens_per_image=4,
                       boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                       eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
                       image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    return Built(processor, Gemma3ForConditionalGeneration(cfg))


def _paligemma() -> Built:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessorPil

    tok = train_tokenizer(["<image>"], bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>")
    ip = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)  # adds <image>, <loc*>, <seg*>
    tok = processor.tokenizer
    cfg = PaliGemmaConfig(text_config=dict(_text_kwargs(tok), model_type="gemma", head_dim=16),
                          vision_config=dict(_siglip(32, 8), projection_dim=HIDDEN),
                          image_token_index=tok.convert_tokens_to_ids("<image>"), projection_dim=HIDDEN,
                          hidden_size=HIDDEN, vocab_size=len(tok))
    return Built(processor, PaliGemmaForConditionalGeneration(cfg))


FAMILIES: dict[str, Callable[[], Built]] = {
    "idefics3": _idefics3, "smolvlm2": _smolvlm, "qwen2_vl": lambda: _qwen("2"), "qwen2_5_vl": lambda: _qwen("2.5"),
    "llava": _llava, "llava_onevision": _llava_onevision, "gemma3": _gemma3, "paligemma": _paligemma,
}


def _printable(text: str) -> bool:
    return bool(text.strip()) and text.isprintable() and "\ufffd" not in text


def build_family(name: str, out: str | Path, *, seed: int = 0) -> Path:
    """Build family `name` (a key of FAMILIES) with random weights and save it as a model directory."""
    torch.manual_seed(seed)
    built = FAMILIES[name]()
    tok = built.processor.tokenizer
    gc = built.model.generation_config
    gc.pad_token_id, gc.eos_token_id, gc.bos_token_id = tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
    gc.max_new_tokens = 3  # a short answer, like the embedded model's: noise, but a word or two of it
    # random weights pick raw bytes as often as words; a partial UTF-8 byte or a control character is no answer
    gc.suppress_tokens = [i for i in range(len(tok)) if not _printable(tok.decode([i]))]
    out = Path(out)
    built.model.save_pretrained(out)
    built.processor.save_pretrained(out)
    (out / "tiny_family.json").write_text(json.dumps({"family": name, "seed": seed}))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.tiny_families FAMILY OUT`: write a tiny random model directory (for `gap bench model`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lab.tiny_families", description=main.__doc__)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_family(args.family, args.out, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
