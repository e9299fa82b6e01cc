"""Resumable checkpoints, written atomically.

Layout of `<run>/checkpoints/`:

    iter-000004/
        model/            save_pretrained weights (safetensors) + processor files: a loadable model spec
        optimizer.pt      AdamW state            scheduler.pt   LR schedule position
        rng.pt            python / numpy / torch RNG states
        state.json        iteration, data position, controller and RAE state, base model spec
    latest                name of the newest complete checkpoint

A checkpoint is built under a temporary name and renamed into place, then `latest` is
replaced atomically, so a crash at any moment leaves the previous checkpoint usable.
Tensors are read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionzero.fileio import fsync_path, fsync_tree, write_text_atomic

LATEST = "latest"
REQUIRED = ("state.json", "optimizer.pt", "scheduler.pt", "rng.pt", "model/config.json")
log = logging.getLogger("visionzero.train")


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    np.random.set_state(_tuples(state["numpy"]))
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    """RNG states are nested tuples; a round trip through torch.save may turn them into lists."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def save_checkpoint(root: Path, iteration: int, model, processor, optimizer, scheduler, state: dict, keep: int) -> Path:
    """Write checkpoint `iteration` under `root` atomically; keep the newest `keep` ones."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(iteration)
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp / "model", safe_serialization=True)
    processor.save_pretrained(tmp / "model")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_plain_rng(rng_state()), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    fsync_tree(tmp)  # every byte on disk before the name (and then `latest`) says it exists
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(root)
    write_text_atomic(root / LATEST, final.name)
    # Prune only older checkpoints: one left by another run with higher numbers is not ours to
    # judge, and the one just written is never deleted.
    older = [p for p in _checkpoints(root) if _iteration(p) < iteration]
    for old in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _iteration(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders under `root`, oldest first (by iteration, not by name)."""
    found = [p for p in root.glob("iter-*") if p.is_dir() and not p.name.endswith(".tmp") and _iteration(p) >= 0]
    return sorted(found, key=_iteration)


def problem(path: Path) -> str | None:
    """Why a resume could not load this checkpoint, or None. Cheap: it reads headers, not
    tensors: every required file present and not empty; each safetensors file's header
    matching its length (a truncated file does not); each torch file a whole zip archive
    (its directory sits at the end, so a cut-off file has none); state.json parses."""
    import zipfile

    from safetensors import safe_open

    for f in REQUIRED:
        if not (path / f).is_file() or (path / f).stat().st_size == 0:
            return f"{f} missing or empty"
    weights = sorted((path / "model").glob("*.safetensors"))
    if not weights:
        return "no safetensors weights"
    for w in weights:
        try:
            with safe_open(str(w), "pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own and OS errors
            return f"model/{w.name} unreadable ({type(exc).__name__})"
    for f in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        if not zipfile.is_zipfile(path / f):
            return f"{f} truncated or not a torch archive"
    try:
        json.loads((path / "state.json").read_text())
    except (OSError, ValueError):
        return "state.json unreadable"
    return None


def is_complete(path: Path) -> bool:
    """Whether a resume can load this checkpoint (see `problem`)."""
    return problem(path) is None


def _plain_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Make the RNG states loadable with weights_only=True (tensors, lists, ints, strings)."""
    out = dict(state)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    out["numpy"] = (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached)
    return out


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint `latest` names; when it is missing, empty or names a folder that cannot
    be loaded (`problem`: incomplete, truncated), the newest loadable one (with a warning), so
    damage never restarts a run."""
    pointer = root / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else ""
    why = problem(root / named) if named else "missing or empty"
    if why is None:
        return root / named
    complete = [p for p in _checkpoints(root) if is_complete(p)]
    if not complete:
        return None
    log.warning("%s: `latest` is %s; resuming from the newest loadable checkpoint, %s",
                root, f"{named!r}, which cannot be loaded: {why}" if named else why, complete[-1].name)
    return complete[-1]


def load_training_state(path: Path) -> tuple[dict, dict, dict, dict]:
    """(state.json, optimizer state, scheduler state, rng state) of a checkpoint."""
    state = json.loads((path / "state.json").read_text())
    optimizer = torch.load(path / "optimizer.pt", weights_only=True)
    scheduler = torch.load(path / "scheduler.pt", weights_only=True)
    rng = torch.load(path / "rng.pt", weights_only=True)
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    rng["numpy"] = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    return state, optimizer, scheduler, rng


def latest_is(root: Path, iteration: int) -> bool:
    path = latest_checkpoint(root)
    return path is not None and path.name == checkpoint_name(iteration)
