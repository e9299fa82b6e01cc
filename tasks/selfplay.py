"""One Iterative-SPO iteration as named tasks over files.

self-play-rollout -> verify-role-rewards -> grpo-update (clue stage) | rlvr-update (decision)
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task

from tasks.session import run_step


@task(name="self-play-rollout", retries=1, retry_delay_seconds=5)
def self_play_rollout(params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str]) -> str:
    """Play the next iteration's games with the current policy; returns the records file."""
    return run_step("play", params, overrides, run_dir, pairs_dirs)["games"]


@task(name="verify-role-rewards")
def verify_role_rewards(params: str, overrides: Sequence[str], run_dir: str, pairs_dirs: Sequence[str], games: str) -> str:
    """Decision rewards, zero-sum clue rewards and role advantages; returns the scores file."""
    return run_step("score", params, overrides, run_dir, pairs_dirs, games=games)["scores"]


def _update(params, overrides, run_dir, pairs_dirs, games, scores) -> dict:
    return run_step("update", params, overrides, run_dir, pairs_dirs, games=games, scores=scores)


grpo_update = task(name="grpo-update")(_update)
grpo_update.__doc__ = "Clue stage: self-play policy gradient with Role Advantage Estimation."
rlvr_update = task(name="rlvr-update")(_update)
rlvr_update.__doc__ = "Decision stage: RL with verifiable vote rewards (group-normalised)."
