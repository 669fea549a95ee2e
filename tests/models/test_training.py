"""`gap model train`: a few steps of each stage run, write a servable checkpoint, and resume to the same weights."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from models.training import TrainConfig, Trainer


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_staged_training_is_reproducible_and_resumable(tmp_path):
    steps = (3, 2, 2)
    full = Trainer(TrainConfig(out=tmp_path / "a", state_dir=tmp_path / "a-state", steps=steps, seed=5)).run()
    log = json.loads((full / "train_log.json").read_text())
    assert log["stage_steps"] == list(steps) and "--steps 3,2,2" in log["reproduce"]
    assert {"config.json", "model.safetensors", "processor_config.json"} <= {p.name for p in full.iterdir()}
    assert not any(k.startswith(("aux", "slots")) for k in _weights(full))  # training-only heads are not shipped

    # the same run, interrupted after the first stage and resumed from its saved state
    cfg = TrainConfig(out=tmp_path / "b", state_dir=tmp_path / "b-state", steps=steps, seed=5)
    assert Trainer(cfg).run(max_stages=1) is None
    assert (tmp_path / "b-state" / "train_state.pt").exists() and not (tmp_path / "b").exists()
    cfg.resume = True
    resumed = Trainer(cfg).run()
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
