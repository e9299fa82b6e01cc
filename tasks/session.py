"""The warm training session behind the per-iteration tasks.

The rollout, reward and update tasks of one iteration pass file paths to each other; the
policy they act on lives in this process, loaded once per run folder and reloaded from
the newest checkpoint when the process is new. So Prefect sees stateless tasks over paths,
while a 7B model is not re-read from disk three times per iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visionzero.settings import Settings, load_settings, settings_hash
from visionzero.train.loop import IterativeSPO, pair_pool

_SESSIONS: dict[tuple[str, str], IterativeSPO] = {}


def settings_of(params: str, overrides: Sequence[str]) -> Settings:
    return load_settings(params, list(overrides))


def session(params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str]) -> IterativeSPO:
    settings = settings_of(params, overrides)
    key = (str(Path(run_dir).resolve()), settings_hash(settings))
    if key not in _SESSIONS:
        pool = pair_pool(pairs_dirs, "train")
        _SESSIONS[key] = IterativeSPO(settings, run_dir, pool, restart_on_change=True)
    return _SESSIONS[key]


def close_sessions() -> None:
    _SESSIONS.clear()
