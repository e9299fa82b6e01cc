"""The reproducible install: the lock, the environment tags a run carries, no library warnings in
the main job's generation, and committed curves with the same bytes for the same run."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import warnings
from importlib import metadata

import pytest

from visionzero.envinfo import LOCK, env_tags, lock_drift, locked_versions


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


def test_the_lock_pins_every_dependency_but_torch(repo_root):
    assert LOCK == repo_root / "requirements" / "lock.txt"
    pins = locked_versions(LOCK)
    # the project's own requirements, as installed: the core, and the extras the lock covers
    requires = metadata.requires("vision-zero") or []
    wanted = [r for r in requires if "extra ==" not in r or re.search(r"extra == .(pipeline|dev).", r)]
    assert wanted and {_name(r) for r in wanted} - {"torch"} <= set(pins)
    assert "torch" not in pins  # its build is the machine's: requirements/constraints.txt pins the version
    constraint = (repo_root / "requirements" / "constraints.txt").read_text()
    assert re.search(r"^torch==\d", constraint, re.M)


def test_the_environment_is_the_lock():
    """`make setup` installed exactly the locked versions (what env.lock_drift reports)."""
    locked_for = re.search(r"^# python: (\S+)", LOCK.read_text(), re.M).group(1)
    if locked_for != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"the lock is for Python {locked_for}: setup installed unlocked versions")
    assert lock_drift() == []


def test_env_tags_name_the_lock_and_the_interpreter(tmp_path):
    import torch
    import transformers

    tags = env_tags()
    assert tags["env.lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert tags["env.lock_drift"] == (", ".join(lock_drift()) or "none")
    assert tags["env.python"] == platform.python_version()
    assert tags["env.torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert tags["env.transformers"] == transformers.__version__
    assert all(isinstance(v, str) and v for v in tags.values())  # MLflow tags are strings

    other = tmp_path / "lock.txt"
    other.write_text("transformers==0.0.1\n    # via x\nnot-a-package-here==1.0\npyyaml==0.0.2 ; python_version > '3'\n")
    drift = lock_drift(other)
    assert drift == [f"pyyaml==0.0.2 (installed {tags_version('pyyaml')})",
                     f"transformers==0.0.1 (installed {transformers.__version__})"]  # fmt: skip
    assert env_tags(other)["env.lock_drift"].startswith("pyyaml==0.0.2")
    assert env_tags(tmp_path / "absent.txt")["env.lock_sha256"] == "none"


def tags_version(dist: str) -> str:
    return metadata.version(dist)


@pytest.mark.slow
def test_generation_prints_no_library_warning(tiny_model, tmp_path):
    """The main job generates on every turn: transformers must not warn there (5.24 warns,
    FutureWarning, whenever a deprecated generate/forward keyword such as past_key_values is
    passed). The clue turns take one sample per prompt, the votes share a prompt's KV cache."""
    from visionzero.rollout.engine import GameEngine, setup_games
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.settings import load_settings

    from .helpers import simple_pairs

    s = load_settings(None, ["game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6", "game.group_size=3"])
    games = setup_games(simple_pairs(tmp_path / "pairs", 2), s.game, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GameEngine(HFPolicy(tiny_model), s.game).play(games, seed=0)
    assert not [f"{w.category.__name__}: {w.message}" for w in caught]


def test_curves_and_summary_are_the_same_bytes_whatever_the_timings(tmp_path):
    """curves.csv and summary.json are committed by DVC: timings (which change on every run)
    stay out of them, in metrics.jsonl."""
    from visionzero.train.report import write_curves, write_summary

    def run(seconds: float):
        folder = tmp_path / f"run-{seconds}"
        folder.mkdir()
        rows = [{"iteration": i, "stage": "decision", "switched": False, "game/vote_accuracy": 0.25 * i,
                 "update/kl": 0.01, "time/iteration_s": seconds * i, "time/rollout_s": seconds}
                for i in (1, 2)]  # fmt: skip
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return write_curves(folder).read_bytes(), write_summary(folder).read_bytes()

    fast, slow = run(1.5), run(97.25)
    assert fast == slow
    assert b"time" not in fast[0] and b"time" not in fast[1]
