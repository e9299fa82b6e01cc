"""Rewards of one game: the decision reward per vote and the zero-sum clue reward per seat.

Pure Python (no torch), in the spirit of verl's core_algos.py: small typed functions over
primitives. Votes arrive already parsed (visionzero.game does the parsing) as `Vote`
values; seats are 1-based everywhere, and per-seat lists are indexed by `seat - 1`.
Formulas and their sources are in METHOD.md section 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from visionzero.settings.schema import RewardSettings

VoteKind = Literal["seat", "na", "invalid"]
Outcome = Literal["correct", "na", "wrong"]

GROUP_EPS = 1e-8  # released code: A = (r - mean) / (std + 1e-8)


@dataclass(frozen=True, slots=True)
class Vote:
    """One parsed vote.

    kind: "seat" (names `seat`), "na" (abstains) or "invalid" (nothing parseable).
    seat: the seat named, 1-based; only for kind "seat". A seat outside 1..n is scored like
        the released code does: "wrong" in the decision reward and dropped from the clue counts.
    format_ok: reasoning before the box and a non-empty boxed answer (used by `shaped` only).
    """

    kind: VoteKind
    seat: int | None = None
    format_ok: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("seat", "na", "invalid"):
            raise ValueError(f"vote kind must be seat, na or invalid, not {self.kind!r}")
        if (self.kind == "seat") != (self.seat is not None):
            raise ValueError("a vote has a seat exactly when its kind is 'seat'")


class GameRewards(NamedTuple):
    """Everything one game pays out.

    voters: who cast each decision sample (0 = the observer prompt, else a civilian's seat).
    decision: decision reward of each vote, in vote order.
    decision_advantages: `decision` normalised within the game's group of votes.
    clue: zero-sum clue reward of each seat (index seat - 1).
    """

    voters: tuple[int, ...]
    decision: tuple[float, ...]
    decision_advantages: tuple[float, ...]
    clue: tuple[float, ...]


# --------------------------------------------------------------------------- decision
def vote_outcome(vote: Vote, spy_seat: int) -> Outcome:
    """correct (names the spy), na (abstains), or wrong (another seat, out of range, invalid)."""
    if vote.kind == "na":
        return "na"
    return "correct" if vote.kind == "seat" and vote.seat == spy_seat else "wrong"


def paper_reward(outcome: Outcome, settings: RewardSettings) -> float:
    """Paper Eq. 4: +1 correct, -0.5 N/A, -1 wrong or invalid (values from settings)."""
    return {"correct": settings.correct, "na": settings.na, "wrong": settings.wrong}[outcome]


def shaped_reward(outcome: Outcome, format_ok: bool, settings: RewardSettings) -> float:
    """The released code's shaping: w_f*(2*format_ok - 1) + w_a*acc + w_b*[correct].

    `acc` is the paper reward of the outcome (+1 correct, -0.5 N/A, -1 wrong/invalid), so
    with the default weights 0.3/1.2/0.99: correct 2.49/1.89, N/A -0.30/-0.90 and wrong
    -0.90/-1.50 with/without good format. The released code writes the bonus as [acc > 0];
    here it is [outcome is correct], which is the same for any positive `correct` value.
    """
    fmt = 1.0 if format_ok else -1.0
    bonus = 1.0 if outcome == "correct" else 0.0
    return (
        settings.shaped_format * fmt
        + settings.shaped_accuracy * paper_reward(outcome, settings)
        + settings.shaped_bonus * bonus
    )


def decision_reward(vote: Vote, spy_seat: int, settings: RewardSettings) -> float:
    """Reward of one vote under `settings.decision` (paper or shaped)."""
    outcome = vote_outcome(vote, spy_seat)
    if settings.decision == "shaped":
        return shaped_reward(outcome, vote.format_ok, settings)
    return paper_reward(outcome, settings)


def decision_rewards(votes: Sequence[Vote], spy_seat: int, settings: RewardSettings) -> list[float]:
    """`decision_reward` of each vote, in order."""
    return [decision_reward(v, spy_seat, settings) for v in votes]


def group_normalize(rewards: Sequence[float], eps: float = GROUP_EPS) -> list[float]:
    """GRPO advantages within one group: (r - mean) / (std + eps), population std.

    If the rewards are all equal (range <= eps) every advantage is exactly 0.0: such a
    group carries no learning signal (an all-N/A group is the N/A trap of METHOD.md 10).
    """
    n = len(rewards)
    if n == 0 or max(rewards) - min(rewards) <= eps:
        return [0.0] * n
    mean = math.fsum(rewards) / n
    std = math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / n)
    return [(r - mean) / (std + eps) for r in rewards]


# --------------------------------------------------------------------------- clue
def seat_vote_counts(votes: Sequence[Vote], n_players: int) -> list[int]:
    """Votes received by each seat (index seat - 1); N/A, invalid and out-of-range dropped."""
    counts = [0] * n_players
    for v in votes:
        if v.kind == "seat" and v.seat is not None and 1 <= v.seat <= n_players:
            counts[v.seat - 1] += 1
    return counts


def zero_sum_clue_rewards(
    counts: Sequence[int], spy_seat: int, beta: float, lam: float
) -> list[float]:
    """Paper Eq. 1 on vote counts (index seat - 1); the rewards sum to 0.

    With gap = v_s - mean_c (votes on the spy minus the civilians' mean):
    r_spy = -beta * gap;  r_cj = (beta / n_c) * gap - lam * (v_cj - mean_c).
    The civilians share the spy's loss equally; the lam term moves reward between
    civilians (it sums to 0 over them) away from the ones who drew suspicion.
    """
    n = len(counts)
    if not 1 <= spy_seat <= n or n < 2:
        raise ValueError(f"spy seat {spy_seat} is not one of {n} seats (need at least 2)")
    civ = [c for seat, c in enumerate(counts, 1) if seat != spy_seat]
    n_c = len(civ)
    mean_c = sum(civ) / n_c
    gap = counts[spy_seat - 1] - mean_c
    return [
        -beta * gap if seat == spy_seat else (beta / n_c) * gap - lam * (c - mean_c)
        for seat, c in enumerate(counts, 1)
    ]


def clue_rewards(
    votes: Sequence[Vote], spy_seat: int, n_players: int, settings: RewardSettings
) -> list[float]:
    """Zero-sum clue reward of each seat from a game's votes (beta, lambda from settings)."""
    counts = seat_vote_counts(votes, n_players)
    return zero_sum_clue_rewards(counts, spy_seat, settings.beta, settings.lambda_)


# --------------------------------------------------------------------------- whole game
def observer_game_rewards(
    votes: Sequence[Vote], spy_seat: int, n_players: int, settings: RewardSettings
) -> GameRewards:
    """Released design: the G samples of the observer prompt are the decision group and the
    votes that score the clues."""
    dec = decision_rewards(votes, spy_seat, settings)
    return GameRewards(
        voters=(0,) * len(votes),
        decision=tuple(dec),
        decision_advantages=tuple(group_normalize(dec)),
        clue=tuple(clue_rewards(votes, spy_seat, n_players, settings)),
    )


def civilian_game_rewards(
    votes: Mapping[int, Vote], spy_seat: int, n_players: int, settings: RewardSettings
) -> GameRewards:
    """Paper main-text variant: each civilian votes once from its own view; the spy does not.

    `votes` maps a civilian's seat to its vote. Each vote gets the same decision reward as
    an observer vote; since "civilians share aligned information, they can be regarded as a
    single group", the civilians' votes of one game form the normalisation group. The clue
    rewards use the same zero-sum formula on these (n_c instead of G) votes; a civilian
    naming its own seat counts against itself (the game layer may mark it invalid instead).
    Votes are taken in seat order, so the result does not depend on the mapping's order.
    """
    for seat in votes:
        if seat == spy_seat or not 1 <= seat <= n_players:
            raise ValueError(
                f"seat {seat} cannot vote: voters are the civilians 1..{n_players} except the spy"
            )
    voters = tuple(sorted(votes))
    ordered = [votes[s] for s in voters]
    dec = decision_rewards(ordered, spy_seat, settings)
    return GameRewards(
        voters=voters,
        decision=tuple(dec),
        decision_advantages=tuple(group_normalize(dec)),
        clue=tuple(clue_rewards(ordered, spy_seat, n_players, settings)),
    )


# --------------------------------------------------------------------------- the N/A trap
def random_guess_value(n_candidates: int, settings: RewardSettings) -> float:
    """Expected decision reward of a uniform guess among `n_candidates` seats (good format).

    METHOD.md section 10: with 4 candidates and the paper reward this is
    0.25*1 + 0.75*(-1) = -0.5, exactly the N/A reward, so a model at chance loses nothing
    by always abstaining, and all-N/A groups have zero advantage.
    """
    if n_candidates < 1:
        raise ValueError("need at least one candidate seat")
    p = 1.0 / n_candidates

    def value(outcome: Outcome) -> float:
        if settings.decision == "shaped":
            return shaped_reward(outcome, True, settings)
        return paper_reward(outcome, settings)

    return p * value("correct") + (1.0 - p) * value("wrong")


def na_value(settings: RewardSettings) -> float:
    """Decision reward of an N/A vote with good format."""
    if settings.decision == "shaped":
        return shaped_reward("na", True, settings)
    return paper_reward("na", settings)


def guess_candidates(n_players: int, voting: str) -> int:
    """Seats a voter at chance picks from: all n for the observer, the n-1 others for a civilian."""
    return n_players - 1 if voting == "civilians" else n_players
