"""What an evaluation was measured on: the set, the rules it was played by, the opponent.

Two win rates are comparable only when all three are the same: a win rate against the
base is not one against a stronger opponent, and 8 held-out games are not 64. The
promotion gate reads these from the registered version (tags `eval.*`) and refuses to
compare results that differ; `eval.model` ties the results to the weights they scored.
Written next to results.json (which stays a flat {metric: number} DVC metrics file).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from visionzero.fileio import write_text_atomic
from visionzero.models.digest import model_identity
from visionzero.settings import Settings

IDENTITY_FILE = "identity.json"
# Evaluation settings that change the numbers without changing the set's fingerprint.
_PROTOCOL_EVAL_KEYS = ("match", "max_new_tokens", "vqa_temperature", "temperature")


def protocol_digest(settings: Settings) -> str:
    """A short hash of how the games are played and answered (game.* and the eval knobs above)."""
    body = {
        "game": settings.game.model_dump(mode="json"),
        "eval": {k: getattr(settings.eval, k) for k in _PROTOCOL_EVAL_KEYS},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def eval_identity(report, settings: Settings) -> dict[str, str]:
    """{eval_set, protocol, opponent, model} of an `EvalReport` (opponent 'none' without a match)."""
    return {
        "eval_set": report.eval_set.fingerprint(),
        "protocol": protocol_digest(settings),
        "opponent": model_identity(report.opponent) if report.opponent else "none",
        "model": model_identity(report.model) if report.model else "",
    }


def write_identity(folder: str | Path, identity: dict[str, str]) -> Path:
    return write_text_atomic(Path(folder) / IDENTITY_FILE, json.dumps(identity, sort_keys=True, indent=2) + "\n")


def read_identity(folder: str | Path) -> dict[str, str] | None:
    """The identity written next to a results.json; None when there is none (an older evaluation)."""
    path = Path(folder) / IDENTITY_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None
