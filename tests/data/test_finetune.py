"""LoRA fine-tuning smoke test on a tiny dataset: a real (tiny) Llava built by the model
code, real peft, an adapter that the product's loader serves."""
from __future__ import annotations

import json
import random

import torch

from models.finetune import FinetuneConfig, finetune, read_examples
from models.scenes import generate_scene, render_png, sample_question
from models.tiny_vlm import build_model, build_processor, build_tokenizer


def _export(tmp_path, n=12):
    data = tmp_path / "export"
    (data / "images").mkdir(parents=True)
    rng = random.Random(0)
    lines = []
    for i in range(n):
        scene = generate_scene(rng, "complex")
        (data / "images" / f"{i}.png").write_bytes(render_png(scene, 128))
        qa = sample_question(scene, rng, "count")
        lines.append({"id": str(i), "image": f"images/{i}.png", "conversations": [
            {"from": "human", "value": "<image>\n" + qa.question}, {"from": "gpt", "value": qa.answer}]})
    lines.append({"id": "typo", "image": "images/0.png", "conversations": [
        {"from": "human", "value": "<image>\nHow many?"}, {"from": "gpt", "value": "thre"}]})
    (data / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return data


def _base_model(tmp_path):
    """A freshly initialised (untrained) tiny Llava of the embedded architecture, saved."""
    base = tmp_path / "base"
    tok = build_tokenizer()
    torch.manual_seed(0)
    build_model(tok).save_pretrained(base)
    build_processor(tok).save_pretrained(base)
    return base


async def test_finetune_writes_an_adapter_the_loader_serves(tmp_path):
    base = _base_model(tmp_path)
    data = _export(tmp_path)
    assert len(read_examples(data)) == 13
    out = tmp_path / "adapter"
    log = finetune(base, data, out, FinetuneConfig(max_steps=3, batch_size=4, lr=5e-3))
    assert log["examples_used"] == 12  # the target the closed vocabulary cannot spell is dropped
    assert log["steps"] == 3 and all(v == v for v in [log["loss_first"], log["loss_last_10"]])
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(base.resolve())
    assert (out / "adapter_model.safetensors").exists()

    from safetensors.torch import load_file

    weights = load_file(out / "adapter_model.safetensors")
    assert any("lora_A" in k and "language_model" in k for k in weights)
    assert any("multi_modal_projector" in k for k in weights)

    from models.loader import load_model

    model = load_model(str(out))
    try:
        ans = await model.answer(render_png(generate_scene(random.Random(1), "simple"), 128), "How many circles are there?",
                                 taint=False)
        assert ans.honest and ans.model_id.startswith("adapter@")
    finally:
        await model.aclose()


async def test_vision_tower_adapters_are_saved_and_served(tmp_path):
    """`--vision lora` adds LoRA to the vision tower; `--vision full` saves the whole tower in the adapter.
    Either way the loader must serve it, and the saved vision weights must differ from the base."""
    base = _base_model(tmp_path)
    data = _export(tmp_path, n=8)
    from safetensors.torch import load_file

    from models.loader import load_model

    for name, cfg in {"lora": FinetuneConfig(max_steps=2, batch_size=4, lr=5e-3, lora_vision=True),
                      "full": FinetuneConfig(max_steps=2, batch_size=4, lr=5e-3, full_vision=True)}.items():
        out = tmp_path / name
        finetune(base, data, out, cfg)
        weights = load_file(out / "adapter_model.safetensors")
        if name == "lora":
            assert any("lora_A" in k and "vision_tower" in k for k in weights)
        else:
            base_w = load_file(base / "model.safetensors")
            # adapter keys look like base_model.model.model.vision_tower.<name>; the base's like vision_tower.<name>
            tower = {"vision_tower." + k.split("vision_tower.", 1)[1]: v for k, v in weights.items() if "vision_tower" in k}
            assert "vision_tower.embeddings.patch_embedding.weight" in tower, "the trained tower must be in the adapter"
            assert set(tower) <= set(base_w)
            assert any(not torch.equal(v, base_w[k]) for k, v in tower.items()), "the tower was not trained"
        model = load_model(str(out))
        try:
            ans = await model.answer(render_png(generate_scene(random.Random(2), "complex"), 128),
                                     "How many objects are there?", taint=False)
            assert ans.honest
        finally:
            await model.aclose()


def test_interrupted_finetune_resumes_to_the_same_adapter(tmp_path):
    """Ctrl-C after step 3 of 6 writes a checkpoint; --resume finishes with exactly the adapter and
    loss history of an uninterrupted run. A checkpoint of other settings is refused."""
    import os
    import signal

    import pytest
    from safetensors.torch import load_file

    base = _base_model(tmp_path)
    data = _export(tmp_path, n=10)
    cfg = FinetuneConfig(max_steps=6, batch_size=4, lr=5e-3, lora_vision=True, checkpoint_every=2)
    whole = finetune(base, data, tmp_path / "whole", cfg)

    def ctrl_c_after_3(step: int, total: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        finetune(base, data, out, cfg, progress=ctrl_c_after_3)
    assert (out / "checkpoint.pt").exists() and not (out / "adapter_model.safetensors").exists()
    with pytest.raises(ValueError, match="another run"):
        finetune(base, data, out, FinetuneConfig(max_steps=6, batch_size=4, lr=1e-3, lora_vision=True), resume=True)
    steps_seen = []
    resumed = finetune(base, data, out, cfg, resume=True, progress=lambda s, t, loss: steps_seen.append(s))
    assert steps_seen == [4, 5, 6] and not (out / "checkpoint.pt").exists()
    log_whole = json.loads((tmp_path / "whole" / "finetune_log.json").read_text())
    log_resumed = json.loads((out / "finetune_log.json").read_text())
    assert log_resumed["loss_history"] == log_whole["loss_history"] and resumed["steps"] == whole["steps"] == 6
    a, b = load_file(tmp_path / "whole" / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_interpolated_adapter_is_the_base_plus_a_share_of_the_fine_tuned_change(tmp_path):
    """WiSE-FT (--interpolate): the same run saved at alpha 0.5 holds half of every LoRA B (so half of
    every low-rank delta) and the projector halfway between the base's and the fine-tuned one."""
    import pytest
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    base = _base_model(tmp_path)
    data = _export(tmp_path, n=8)
    cfg = FinetuneConfig(max_steps=3, batch_size=4, lr=5e-3, lora_vision=True)
    finetune(base, data, tmp_path / "full", cfg)
    finetune(base, data, tmp_path / "half", FinetuneConfig(**{**cfg.__dict__, "interpolate": 0.5}))
    full, half = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("full", "half"))
    original = AutoModelForImageTextToText.from_pretrained(base).state_dict()
    assert full.keys() == half.keys()
    lora_b = [k for k in full if "lora_B" in k]
    projector = [k for k in full if "multi_modal_projector" in k]
    assert lora_b and projector and any("vision_tower" in k for k in lora_b)
    for k in full:
        if k in lora_b:
            expected = 0.5 * full[k]
        elif k in projector:
            before = original[k.removeprefix("base_model.model.")]
            assert not torch.allclose(full[k], before)          # the projector was trained
            expected = before + 0.5 * (full[k] - before)
        else:
            expected = full[k]                                  # lora_A: unchanged
        assert torch.allclose(half[k], expected, atol=1e-6), k
    with pytest.raises(ValueError, match="between 0 and 1"):
        FinetuneConfig(interpolate=1.5)
