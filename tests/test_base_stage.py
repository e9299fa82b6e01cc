"""The base stage as a build step: reproducible by seed, cached by key, the shipped copy."""

from __future__ import annotations

import hashlib
import json

import pytest

from visionzero.base import stage
from visionzero.settings import load_settings

pytestmark = pytest.mark.slow


def _settings(cache, *more):
    return load_settings(None, ["profile=micro", f"model.cache_dir={cache}", "runtime.device=cpu",
                                "base.steps=6", "base.polish_steps=3", "base.batch_size=4", "base.eval_examples=4", "base.threads=1", *more])


def _digest(folder):
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_base_and_skills(tmp_path):
    s = _settings(tmp_path / "cache")
    a = stage.build_base(s, tmp_path / "a", say=lambda _: None)
    b = stage.build_base(s, tmp_path / "b", say=lambda _: None)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert a["skills"] == b["skills"] and a["key"] == stage.base_key(s)
    assert set(a["skills"]) >= {"caption_accuracy", "judge_accuracy", "reasoning_accuracy", "vote_format_rate"}
    other = stage.build_base(_settings(tmp_path / "cache", "base.seed=1"), tmp_path / "c", say=lambda _: None)
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a") and other["key"] != a["key"]


def test_cached_then_shipped_then_trained(tmp_path, monkeypatch):
    s = _settings(tmp_path / "cache")
    shipped = tmp_path / "shipped"
    stage.build_base(s, shipped, say=lambda _: None)
    monkeypatch.setattr(stage, "SHIPPED", shipped)
    trained = []
    monkeypatch.setattr(stage, "build_base", lambda *a, **k: trained.append(1))
    folder = stage.ensure_base(s)  # key matches the shipped copy: copied, not trained
    assert not trained and _digest(folder) == _digest(shipped)
    assert stage.starting_spec(s) == str(folder)  # cached from now on
    changed = _settings(tmp_path / "cache", "base.lr=0.002")
    assert stage.ensure_base(changed) == stage.base_dir(changed) != folder  # another key: trained
    assert trained == [1]
    assert not list((tmp_path / "cache").glob("*.tmp-*"))  # nothing half-made is left


def test_the_shipped_base_is_the_micro_profiles_and_meets_its_bars(repo_root):
    """`make run` on a fresh clone copies the shipped base instead of training 20 minutes."""
    s = load_settings(repo_root / "params.yaml")
    record = json.loads((stage.SHIPPED / stage.RECORD).read_text())
    assert record["key"] == stage.base_key(s)
    assert record["skills"]["caption_accuracy"] >= 0.95 and record["skills"]["judge_accuracy"] >= 0.85
    assert (stage.SHIPPED / "model.safetensors").stat().st_size < 8e6
