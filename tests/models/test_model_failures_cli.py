"""Every command that runs the model ends a model failure with one clear line and exit status 1
(no traceback): a model directory that does not load, and a model server that does not answer."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gap.cli import main
from models.scenes import render_png, scene_from_seed

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broken(tmp_path: Path) -> str:
    """A model directory whose config.json was cut short (a download that stopped halfway)."""
    path = tmp_path / "broken-vlm"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "idefics3", "architectures": ["X"]})[:20])
    return str(path)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("GAP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'gap.sqlite3'}")
    monkeypatch.setenv("GAP_MODEL_TIMEOUT_S", "0.5")
    monkeypatch.setenv("GAP_OPENAI_CONNECT_TIMEOUT_S", "0.2")
    (tmp_path / "scene.png").write_bytes(render_png(scene_from_seed("heldout", 1, "simple"), 96))
    return tmp_path


def commands(workdir: Path, model: str) -> list[list[str]]:
    return [
        ["model", "ask", str(workdir / "scene.png"), "How many objects are there?", "--model", model],
        ["model-eval", "--n", "1", "--types", "count_all", "--model", model],
        ["images", "generate", "3", "--model", model],
        ["images", "reliable", "--model", model],
        ["bench", "model", "--model", model],
        ["model", "serve", "--model", model, "--port", str(free_port())],
    ]


def one_clear_line(err: str, *words: str) -> None:
    """The failure is told once, last, with its cause (a resumable command may say before that it resumes)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and sum("the model" in line for line in lines) == 1, err
    assert all(w in lines[-1] for w in words), lines[-1]


def test_a_model_that_does_not_load(workdir, broken, capsys):
    for argv in commands(workdir, broken):
        capsys.readouterr()
        assert main(argv) == 1, argv
        one_clear_line(capsys.readouterr().err, "cannot load the model", "broken-vlm")


def test_a_model_server_that_does_not_answer(workdir, capsys):
    model = f"openai:http://127.0.0.1:{free_port()}/v1?model=m"
    for argv in commands(workdir, model)[:4]:  # the ones that ask questions (`model serve` would serve a 503)
        capsys.readouterr()
        assert main(argv) == 1, argv
        one_clear_line(capsys.readouterr().err, "did not answer")


def test_the_installed_command_prints_no_traceback(workdir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "GAP_MODEL": f"openai:http://127.0.0.1:{free_port()}/v1?model=m"}
    proc = subprocess.run([sys.executable, "-m", "gap.cli", "images", "generate", "2"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("gap images: the model failed: ")
