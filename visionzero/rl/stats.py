"""Batch statistics of one iteration for logging, and the N/A-trap warning.

The vote statistics also feed the phase controller: `accuracy` is its acc_t and `na_rate`
its na_t (fractions of all votes cast, invalid ones included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from visionzero.rl.advantages import ClueGame, RaeState, role_means
from visionzero.rl.rewards import (
    GROUP_EPS,
    Vote,
    guess_candidates,
    na_value,
    random_guess_value,
    vote_outcome,
)
from visionzero.settings.schema import RewardSettings


def mean(values) -> float:
    """Arithmetic mean; 0.0 for no values (an empty batch logs zeros, not NaN)."""
    values = list(values)
    return math.fsum(values) / len(values) if values else 0.0


class VoteGame(NamedTuple):
    """The votes cast in one game and the true spy's seat."""

    votes: Sequence[Vote]
    spy_seat: int


class VoteStats(NamedTuple):
    """Shares of all votes in a batch: naming the spy, abstaining, unparseable."""

    votes: int
    accuracy: float
    na_rate: float
    invalid_rate: float


def vote_stats(games: Sequence[VoteGame]) -> VoteStats:
    """Accuracy, N/A and invalid rates over every vote of every game (0.0 when no votes)."""
    n = correct = na = invalid = 0
    for game in games:
        for vote in game.votes:
            n += 1
            correct += vote_outcome(vote, game.spy_seat) == "correct"
            na += vote.kind == "na"
            invalid += vote.kind == "invalid"
    if n == 0:
        return VoteStats(0, 0.0, 0.0, 0.0)
    return VoteStats(n, correct / n, na / n, invalid / n)


def frac_reward_zero_std(groups: Sequence[Sequence[float]], eps: float = GROUP_EPS) -> float:
    """Share of groups whose rewards are all equal (zero advantage, no learning signal)."""
    if not groups:
        return 0.0
    flat = sum(1 for g in groups if not g or max(g) - min(g) <= eps)
    return flat / len(groups)


def batch_stats(
    vote_games: Sequence[VoteGame],
    decision_groups: Sequence[Sequence[float]],
    clue_games: Sequence[ClueGame],
    rae: RaeState,
) -> dict[str, float]:
    """Flat metrics of one iteration, ready for a tracker (names are stable keys)."""
    votes = vote_stats(vote_games)
    means = role_means(clue_games)
    flat_rewards = [r for g in decision_groups for r in g]
    return {
        "votes": float(votes.votes),
        "vote_accuracy": votes.accuracy,
        "na_rate": votes.na_rate,
        "invalid_rate": votes.invalid_rate,
        "frac_reward_zero_std": frac_reward_zero_std(decision_groups),
        "decision_reward_mean": math.fsum(flat_rewards) / len(flat_rewards)
        if flat_rewards
        else 0.0,
        "clue_reward_spy_mean": means.spy,
        "clue_reward_civ_mean": means.civ,
        "rae_b_spy": rae.b_spy,
        "rae_b_civ": rae.b_civ,
    }


def na_warning(
    na_rate: float, settings: RewardSettings, n_players: int, voting: str = "observer"
) -> str | None:
    """A one-line warning when the N/A share exceeds settings.na_warn, else None.

    It states the N/A trap (METHOD.md section 10): a voter at chance picks uniformly among
    n seats (observer) or the n-1 others (civilian voting); when N/A pays at least that
    guess, abstaining is never worse than guessing and all-N/A groups stop learning.
    """
    if na_rate <= settings.na_warn:
        return None
    k = guess_candidates(n_players, voting)
    guess = random_guess_value(k, settings)
    na = na_value(settings)
    if na >= guess:
        verdict = f"N/A ({na:+.3f}) >= a random guess ({guess:+.3f}): the N/A trap; lower rewards.na below the guess value"
    else:
        verdict = f"N/A ({na:+.3f}) < a random guess ({guess:+.3f}), so guessing still pays"
    return (
        f"N/A rate {na_rate:.2f} > na_warn {settings.na_warn:.2f} "
        f"({settings.decision} reward, chance 1/{k}): {verdict}"
    )
