"""One Iterative-SPO iteration as named tasks over files.

self-play-rollout -> verify-role-rewards -> grpo-update (clue stage) | rlvr-update (decision)

Each takes the iteration it works on and the stage the controller chose: they name the task
run (`self-play-rollout-it3-decision`) so the Prefect UI tells iterations and stages apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task

from tasks.retry import transient_only
from tasks.session import run_step


@task(name="self-play-rollout", task_run_name="self-play-rollout-it{iteration}-{stage}",
      retries=1, retry_delay_seconds=5, retry_condition_fn=transient_only)  # fmt: skip
def self_play_rollout(
    params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str], *, iteration: int, stage: str
) -> str:
    """Play iteration `iteration`'s games with the current policy; returns the records file."""
    return run_step("play", params, overrides, run_dir, pairs_dirs)["games"]


@task(name="verify-role-rewards", task_run_name="verify-role-rewards-it{iteration}-{stage}")
def verify_role_rewards(
    params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str], games: str, *, iteration: int, stage: str
) -> str:
    """Decision rewards, zero-sum clue rewards and role advantages; returns the scores file."""
    return run_step("score", params, overrides, run_dir, pairs_dirs, games=games)["scores"]


def _update(params, overrides, run_dir, pairs_dirs, games, scores, *, iteration: int, stage: str) -> dict:
    return run_step("update", params, overrides, run_dir, pairs_dirs, games=games, scores=scores)


grpo_update = task(name="grpo-update", task_run_name="grpo-update-it{iteration}-{stage}")(_update)
grpo_update.__doc__ = "Clue stage: self-play policy gradient with Role Advantage Estimation."
rlvr_update = task(name="rlvr-update", task_run_name="rlvr-update-it{iteration}-{stage}")(_update)
rlvr_update.__doc__ = "Decision stage: RL with verifiable vote rewards (group-normalised)."
