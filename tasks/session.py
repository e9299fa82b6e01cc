"""The training session behind the per-iteration tasks.

The rollout, reward and update tasks of one iteration pass file paths to each other. By
default the policy they act on lives in this process, loaded once per run folder (and from
the newest checkpoint when the process is new), so Prefect sees stateless tasks over
files while a 7B model is not re-read three times per iteration.

With `runtime.python` set, each step instead runs as `vision-zero step ...` under that
interpreter: how GPU users keep training (and its CUDA stack) in its own environment while
Prefect stays in this one. Each step then resumes from the checkpoint on disk.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from visionzero.settings import Settings, load_settings, settings_hash

if TYPE_CHECKING:
    from visionzero.train.loop import IterativeSPO

# The training stack (torch, transformers, the loop) is imported where a policy is needed:
# `settings_of` is all the registry tasks use, and importing this module must not make them
# (or the DVC `register` stage, whose code deps follow its imports) depend on training code.
_SESSIONS: dict[tuple[str, str], IterativeSPO] = {}


class StepFailed(RuntimeError):
    """A step run in the other environment exited with an error."""


def settings_of(params: str, overrides: Sequence[str]) -> Settings:
    return load_settings(params, list(overrides))


def session(params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str]) -> IterativeSPO:
    from visionzero.train.loop import IterativeSPO, pair_pool

    settings = settings_of(params, overrides)
    key = (str(Path(run_dir).resolve()), settings_hash(settings))
    if key not in _SESSIONS:
        pool = pair_pool(pairs_dirs, "train")
        _SESSIONS[key] = IterativeSPO(settings, run_dir, pool, restart_on_change=True)
    return _SESSIONS[key]


def warm_players(params: str, overrides: Sequence[str], run_dir: str):
    """(current policy, starting model or None) of the run's session when it is warm in this
    process; (None, None) otherwise (steps run elsewhere, or nothing loaded yet)."""
    settings = settings_of(params, overrides)
    spo = _SESSIONS.get((str(Path(run_dir).resolve()), settings_hash(settings)))
    if settings.runtime.python or spo is None:
        return None, None
    return spo.eval_players()


def release(run_dir: str) -> None:
    """Forget the run's warm policy (a served process must not hold a 7B model between runs)."""
    for key in [k for k in _SESSIONS if k[0] == str(Path(run_dir).resolve())]:
        _SESSIONS.pop(key).close()


def run_step(name: str, params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str], **paths: str) -> dict:
    """play / score / update, in this process or under `runtime.python`; a small JSON result."""
    settings = settings_of(params, overrides)
    if not settings.runtime.python:
        spo = session(params, overrides, run_dir, pairs_dirs)
        if name == "play":
            return {"games": str(spo.play())}
        if name == "score":
            return {"scores": str(spo.score(paths["games"]))}
        return spo.update(paths["games"], paths["scores"])
    cmd = [settings.runtime.python, "-m", "visionzero.cli.main", "step", name, "--params", params,
           *[a for o in overrides for a in ("--set", o)], "--run-dir", run_dir, "--pairs", *pairs_dirs]  # fmt: skip
    for key, value in paths.items():
        cmd += [f"--{key}", value]
    limit = settings.runtime.step_timeout
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)  # (kills the step at the limit)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"step {name} under {settings.runtime.python} did not finish within {limit:.0f} s "
                         "(runtime.step_timeout); it was stopped") from None  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StepFailed(f"step {name} under {settings.runtime.python} exited {done.returncode}: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_state(params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str]) -> tuple[int, int, str]:
    """(iterations done, iterations planned, next stage) without loading a model when steps run elsewhere."""
    from visionzero.rl.controller import PhaseState
    from visionzero.train.checkpoint import latest_checkpoint

    settings = settings_of(params, overrides)
    if not settings.runtime.python:
        spo = session(params, overrides, run_dir, pairs_dirs)
        return spo.iteration, settings.train.iterations, spo.controller.stage
    ckpt = latest_checkpoint(Path(run_dir) / "checkpoints")
    if ckpt is None:
        return 0, settings.train.iterations, settings.train.phase.start
    state = json.loads((ckpt / "state.json").read_text())
    return state["iteration"], settings.train.iterations, PhaseState.from_dict(state["controller"]).stage


def current_checkpoint(params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str]) -> Path:
    """The checkpoint of the current policy (written now if the newest one is older)."""
    from visionzero.train.checkpoint import latest_checkpoint

    if settings_of(params, overrides).runtime.python:
        return latest_checkpoint(Path(run_dir) / "checkpoints")  # every step-run update checkpoints
    return session(params, overrides, run_dir, pairs_dirs).checkpoint_now()
