"""Which settings a resumed training may change, and the fingerprint of a training.

The training loop (train/loop.py) resumes a run folder when only RESUMABLE_CHANGES differ
from the checkpoint's settings and starts over otherwise; the MLflow tracker continues a
run under exactly the same rule (one MLflow run per training), so the rule lives here,
free of torch.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel

from visionzero.settings.loader import flatten
from visionzero.settings.secrets import redacted_dict

# Settings that may change between a checkpoint and its resume without changing what the
# run computes (how long, how often to save, where to log, how to evaluate).
RESUMABLE_CHANGES = (
    "train.iterations", "train.checkpoint_every", "train.keep_checkpoints", "tracking.", "registry.",
    "eval.", "rollout.micro_batch_size", "runtime.threads", "runtime.workdir", "model.cache_dir",
)  # fmt: skip


def resumable(key: str) -> bool:
    """True for a flattened key a resume may change."""
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES)


def settings_changes(saved: dict, current: dict) -> list[str]:
    """Flattened keys whose values differ, ignoring the ones a resume may change."""
    a, b = flatten(saved), flatten(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not resumable(k))


def training_fingerprint(settings: BaseModel) -> str:
    """Hash of the settings a resume may not change: equal fingerprints, same training."""
    fixed = {k: v for k, v in flatten(redacted_dict(settings)).items() if not resumable(k)}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]
