"""The base stage as a cached build step: `ensure_base(settings)` -> the model folder.

The output is keyed by everything that shapes it (the tiny model's sizes, the base stage's
settings, the world its examples come from, the game's layout, the builder versions):
`<model.cache_dir>/base-<key>/`. Three ways to get it, cheapest first:
1. the cache folder already holds it;
2. the repository ships the output for the `micro` profile (visionzero/assets/micro-base,
   about 4 MB) and its key matches: it is copied (about 35 minutes of training saved on a fresh clone);
3. otherwise it is trained (about 35 minutes on 2 CPU threads for the micro world) and
   its held-out skills measured. `force=True` (`vision-zero model prepare --retrain`,
   `dvc repro -f base_model`) always trains: that is how the shipped copy is rebuilt.
Folders are built beside the target and renamed into place, so a crash leaves nothing half-made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visionzero.settings import Settings, settings_dict

BASE_STAGE_VERSION = 1
RECORD = "base_stage.json"
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "micro-base"
log = logging.getLogger("visionzero.base")


def base_inputs(settings: Settings) -> dict[str, Any]:
    """Everything the base stage's output depends on (threads change speed, not results)."""
    from visionzero.models.tiny import BUILDER_VERSION

    base = settings_dict(settings.base)
    base.pop("threads")
    if not base["vote_prior_steps"]:  # phase 3 off: the same output as before phase 3 existed
        for key in ("vote_prior", "vote_prior_steps", "observer_summary"):
            base.pop(key)
    elif not base["observer_summary"]:  # (added after phase 3: keys of earlier phase-3 bases stay)
        base.pop("observer_summary")
    game = settings.game
    return {
        "version": BASE_STAGE_VERSION,
        "tiny_builder": BUILDER_VERSION,
        "tiny": settings_dict(settings.model.tiny),
        "pixels": [settings.model.min_pixels, settings.model.max_pixels],
        "base": base,
        "image_size": settings.pairs.image_size,
        "clevr": settings_dict(settings.pairs.clevr),
        "game": {"n_players": game.n_players, "rounds": game.rounds,
                 "clue_tokens": game.clue.max_new_tokens, "decision_tokens": game.decision.max_new_tokens},
    }  # fmt: skip


def base_key(settings: Settings) -> str:
    blob = json.dumps(base_inputs(settings), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def base_dir(settings: Settings) -> Path:
    return Path(settings.model.cache_dir) / f"base-{base_key(settings)}"


def read_record(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.exists() else None


def starting_spec(settings: Settings) -> str:
    """The model Iterative-SPO starts from: the base stage's output when it is enabled for
    the tiny model, else model.spec resolved (a folder or hub id)."""
    from visionzero.models.loading import resolve_spec

    if settings.base.enabled and settings.model.spec == "tiny":
        return str(ensure_base(settings))
    return resolve_spec(settings.model)


def ensure_base(settings: Settings, force: bool = False, log_fn: Callable[[str], None] | None = None) -> Path:
    """The base model folder for `settings`: cached, shipped, or trained now."""
    target = base_dir(settings)
    key = base_key(settings)
    say = log_fn or log.info
    if not force and read_record(target) is not None:
        return target
    shipped = read_record(SHIPPED)
    if not force and shipped is not None and shipped.get("key") == key:
        say(f"base model: copying the shipped base stage ({SHIPPED}) to {target}")
        return _install(target, lambda tmp: shutil.copytree(SHIPPED, tmp, dirs_exist_ok=True))
    say(f"base model: training the base stage ({settings.base.steps} steps) into {target}")
    return _install(target, lambda tmp: build_base(settings, tmp, say))


def _install(target: Path, make: Callable[[Path], Any]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        make(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_base(settings: Settings, out_dir: str | Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the base stage from the random tiny model into `out_dir`; returns its record."""
    from visionzero.base.sft import train_base
    from visionzero.base.skills import measure_skills
    from visionzero.models.loading import load_model
    from visionzero.models.tiny import ensure_tiny
    from visionzero.rollout.hf_backend import HFPolicy

    start = time.perf_counter()
    loaded = load_model(settings.model, settings.runtime, spec=str(ensure_tiny(settings.model)))
    curve = train_base(loaded, settings, log=say)
    trained = time.perf_counter() - start
    skills = measure_skills(HFPolicy(loaded, settings.rollout.micro_batch_size), settings)
    say("base skills: " + ", ".join(f"{k} {v:.3f}" for k, v in skills.items()))
    out = Path(out_dir)
    loaded.model.save_pretrained(out, safe_serialization=True)
    loaded.processor.save_pretrained(out)
    record = {
        "key": base_key(settings),
        "inputs": base_inputs(settings),
        "skills": skills,
        "curve": curve,
        "train_seconds": round(trained, 1),
        "threads": settings.base.threads,
    }
    (out / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def skills_metrics(folder: str | Path) -> dict[str, float]:
    """The base model's held-out skills as flat metrics (`base/<skill>`); {} if not a base
    (a model folder without a base-stage record, or a hub id)."""
    record = read_record(folder) or {}
    return {f"base/{k}": float(v) for k, v in record.get("skills", {}).items()}


def write_skills_metrics(folder: str | Path, path: str | Path) -> dict[str, float]:
    """Write `skills_metrics(folder)` to `path` (the DVC metrics file); returns them."""
    from visionzero.fileio import write_text_atomic

    metrics = skills_metrics(folder)
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
