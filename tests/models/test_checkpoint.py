"""The shipped checkpoint: a standard transformers directory that loads like any real VLM, small enough to commit."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from settings import EMBEDDED_MODEL_DIR

FRESH_PROCESS_SCRIPT = r"""
import json, sys
from transformers import AutoModelForImageTextToText, AutoProcessor
from models.scenes import render, scene_from_seed
path = sys.argv[1]
processor = AutoProcessor.from_pretrained(path)
model = AutoModelForImageTextToText.from_pretrained(path)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many objects are there?"}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=[render(scene_from_seed("heldout", 0, "simple"))], text=[prompt], return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
print(json.dumps({"model": type(model).__name__, "processor": type(processor).__name__, "answer": answer}))
"""


def test_checkpoint_files_and_size():
    names = {p.name for p in EMBEDDED_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "chat_template.jinja",
            "generation_config.json"} <= names
    total = sum(p.stat().st_size for p in EMBEDDED_MODEL_DIR.iterdir() if p.is_file())
    assert total <= 20 * 1024 * 1024
    config = json.loads((EMBEDDED_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "llava" and config["architectures"] == ["LlavaForConditionalGeneration"]
    assert "train_state" not in " ".join(names)


def test_loads_with_auto_classes_in_a_fresh_process():
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(EMBEDDED_MODEL_DIR)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model"] == "LlavaForConditionalGeneration"
    assert result["processor"] == "LlavaProcessor"
    assert result["answer"].strip()


async def test_lora_adapter_directory_loads_over_its_base(tmp_path):
    """`gap finetune` writes peft adapters (SPEC §3.2); the loader takes such a directory like a full model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from models.loader import load_model
    from models.scenes import render_png, scene_from_seed

    base = AutoModelForImageTextToText.from_pretrained(EMBEDDED_MODEL_DIR)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a visible change, so the adapter provably takes effect
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    AutoProcessor.from_pretrained(EMBEDDED_MODEL_DIR).save_pretrained(adapter_dir)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(EMBEDDED_MODEL_DIR)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(cfg))

    adapted = load_model(str(adapter_dir))
    plain = load_model(str(EMBEDDED_MODEL_DIR))
    try:
        assert adapted.model_id != plain.model_id
        png = render_png(scene_from_seed("heldout", 1, "simple"))
        ans = await adapted.answer(png, "How many objects are there?", taint=True)
        assert ans.honest and ans.served
        a = adapted.model.model.language_model.layers[0].self_attn.q_proj.weight
        b = plain.model.model.language_model.layers[0].self_attn.q_proj.weight
        assert not torch.allclose(a, b)
    finally:
        await adapted.aclose()
        await plain.aclose()


def test_missing_model_directory_is_a_clear_error(tmp_path):
    from models.base import ModelError
    from models.loader import load_model

    with pytest.raises(ModelError):
        load_model(str(tmp_path / "nope"))
