"""`dvc repro` in a temporary git repository: the whole pipeline, then a no-op second repro."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

TINY = {
    "profile": "none",  # this file's values, not the micro profile's budget
    "runtime": {"threads": 1},
    "base": {"steps": 2, "polish_steps": 1, "batch_size": 2, "eval_examples": 2, "threads": 1},
    "pairs": {"n_train": 6, "n_eval": 4, "workers": 1},
    "game": {"n_players": 3, "rounds": 1, "group_size": 2, "clue": {"max_new_tokens": 6}, "decision": {"max_new_tokens": 6}},
    "train": {"iterations": 1, "games_per_iteration": 2},
    "eval": {"games": 2, "vqa_per_type": 1, "max_new_tokens": 6},
}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def _run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One Prefect server for every stage's flow (as a user would run it): without it each
    `python -m flows.*` stage starts and stops its own temporary server (~15 s each here)."""
    home = tmp_path_factory.mktemp("prefect-home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home)}
    log = (home / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


@pytest.fixture
def project(tmp_path, repo_root, prefect_api):
    """A copy of the project's pipeline files in a fresh git + DVC repository."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(repo_root / name, repo / name)
    for name in ("flows", "tasks", "visionzero"):
        shutil.copytree(repo_root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = _merge(yaml.safe_load((repo / "params.yaml").read_text()), TINY)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_API_URL": prefect_api,
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip
    _run(["git", "init", "-q"], repo, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo, env)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)
    return repo, env


def test_repro_runs_everything_then_nothing_and_experiments(project):
    repo, env = project
    dvc = [sys.executable, "-m", "dvc"]
    first = _run([*dvc, "repro"], repo, env)
    for stage in ("base_model", "pairs@clevr", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in first, stage
    summary = json.loads((repo / "runs/train/summary.json").read_text())
    assert summary["iteration"] == 1
    results = json.loads((repo / "runs/eval/results.json").read_text())
    assert "win_rate" in results
    assert json.loads((repo / "runs/register/decision.json").read_text())["promoted"] is True

    second = _run([*dvc, "repro"], repo, env)
    assert "Running stage" not in second and "up to date" in second

    shown = _run([*dvc, "metrics", "show", "--json"], repo, env)
    assert "win_rate" in shown and "base/caption_accuracy" in shown  # the base stage's skills
    plots = _run([*dvc, "plots", "show", "--json"], repo, env)
    assert "curves.csv" in plots

    # an experiment with one setting changed re-runs training and what follows, not the data
    exp = _run([*dvc, "exp", "run", "-S", "train.lr=0.0002"], repo, env)
    assert "Running stage 'train'" in exp and "Running stage 'pairs@clevr'" not in exp
    state = json.loads(next((repo / "runs/train/checkpoints").glob("iter-*/state.json")).read_text())
    assert state["settings"]["train"]["lr"] == 0.0002  # a new run, not a resume of the old one
    shown = json.loads(_run([*dvc, "exp", "show", "--json"], repo, env))
    assert "0.0002" in json.dumps(shown)
