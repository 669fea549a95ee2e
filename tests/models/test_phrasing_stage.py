"""`gap model train --from DIR --stage phrasing`: the vocabulary grows with every old id kept, the
template words' rows and the vision side stay exactly as they were, a seed repeats a run, and the
result is a servable checkpoint that records how it was made."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from gap.cli import main
from models.phrasing import train_phrasing
from models.tiny_vlm import build_model, build_processor, build_tokenizer


@pytest.fixture(scope="module")
def template_only_checkpoint(tmp_path_factory):
    """A small random checkpoint with the templates' vocabulary only (as the base recipe once shipped)."""
    path = tmp_path_factory.mktemp("base") / "model"
    tok = build_tokenizer(phrasings=False)
    torch.manual_seed(0)
    model = build_model(tok)
    model.save_pretrained(path)
    build_processor(tok).save_pretrained(path)
    (path / "train_log.json").write_text(json.dumps({"seed": 1, "reproduce": "gap model train --out DIR --seed 1"}))
    return path


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_phrasing_stage_grows_the_vocabulary_and_repeats_with_a_seed(template_only_checkpoint, tmp_path):
    src = template_only_checkpoint
    a = train_phrasing(src, tmp_path / "a", steps=1, seed=3, log_every=1)
    b = train_phrasing(src, tmp_path / "b", steps=1, seed=3, log_every=1)
    wa, wb, w0 = _weights(a), _weights(b), _weights(src)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    old_vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    new_vocab = json.loads((a / "tokenizer.json").read_text())["model"]["vocab"]
    assert all(new_vocab[w] == i for w, i in old_vocab.items()) and len(new_vocab) > len(old_vocab)
    emb_key = next(k for k in wa if k.endswith("embed_tokens.weight"))
    n_old = len(old_vocab)
    assert wa[emb_key].shape[0] == len(new_vocab)
    assert torch.equal(wa[emb_key][:n_old], w0[emb_key])        # template words' rows: frozen
    assert not torch.equal(wa[emb_key][n_old:], torch.zeros_like(wa[emb_key][n_old:]))
    vision = [k for k in w0 if "vision_tower" in k or "multi_modal_projector" in k]
    assert vision and all(torch.equal(wa[k], w0[k]) for k in vision)  # what the model sees is unchanged
    lm = [k for k in w0 if "layers.0.self_attn.q_proj" in k and "language_model" in k]
    assert lm and not torch.equal(wa[lm[0]], w0[lm[0]])          # the language model did learn

    log = json.loads((a / "train_log.json").read_text())
    stage = log["continued"][-1]
    assert stage["stage"] == "phrasing" and stage["steps"] == 1 and stage["seed"] == 3
    assert log["reproduce"].startswith("gap model train --out DIR --seed 1 && gap model train --from DIR "
                                       "--stage phrasing") and "--steps 1 --seed 3" in log["reproduce"]
    assert "I can't tell" in json.loads((a / "answer_forms.json").read_text())


def test_phrasing_stage_cli_refuses_bad_arguments(template_only_checkpoint, tmp_path, capsys):
    src = str(template_only_checkpoint)
    assert main(["model", "train", "--from", src, "--out", str(tmp_path / "x")]) == 2
    assert "--from and --stage go together" in capsys.readouterr().err
    assert main(["model", "train", "--from", src, "--stage", "phrasing", "--out", src]) == 2
    assert "--out must differ" in capsys.readouterr().err
    assert main(["model", "train", "--from", str(tmp_path / "none"), "--stage", "phrasing",
                 "--out", str(tmp_path / "y")]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main(["model", "train", "--from", src, "--stage", "phrasing", "--steps", "1,2,3",
                 "--out", str(tmp_path / "z")]) == 2
    assert "one positive count" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
