"""Role Advantage Estimation (RAE) for the clue stage.

The spy sees less than the civilians, so each role keeps its own baseline, an exponential
moving average of that role's clue reward (paper Eq. 2, METHOD.md section 4):

    b_spy <- a*b_spy + (1-a)*r_spy        b_civ <- a*b_civ + (1-a)*mean_j r_cj

both starting at 0. A player's advantage is r - b_role, given unchanged to every clue it
spoke in the game. Clue advantages get no std normalisation (the rewards are zero-sum).

Order (settings.rae_order): `update_then_subtract` (released code) lets the current game
enter the baseline before it is subtracted; `subtract_then_update` subtracts the baseline
built from earlier games only (a baseline independent of the sample, as in textbook REINFORCE).

The baselines move once per GAME, in a fixed game order (`rae_sequential`): at 128 games
per iteration a per-batch update would leave the spy's baseline near 0 for 20+ iterations.

Data parallelism: all ranks must share one baseline and produce the same advantages. The
per-game role rewards are a few floats: ranks all-gather them in the global game order
(rank-major, then each rank's own order) and every rank runs `rae_sequential` over the
whole list, keeping the advantages of its own games. `rae_grouped` (one step from batch
means, e.g. reduced with `combine_role_means`) remains for a per-micro-step update such as
the released code's, which updates once per micro-step of one game per GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

RaeOrder = Literal["update_then_subtract", "subtract_then_update"]


class ClueGame(NamedTuple):
    """The clue rewards of one game: one per seat (index seat - 1) and the spy's seat."""

    rewards: Sequence[float]
    spy_seat: int


class RoleMeans(NamedTuple):
    """Mean spy reward and mean (over games) of the per-game civilian mean, over `games` games."""

    spy: float
    civ: float
    games: int


@dataclass(frozen=True)
class RaeState:
    """The two role baselines and how many updates built them (for logging and resume)."""

    b_spy: float = 0.0
    b_civ: float = 0.0
    updates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"b_spy": self.b_spy, "b_civ": self.b_civ, "updates": self.updates}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RaeState:
        return cls(
            b_spy=float(data["b_spy"]), b_civ=float(data["b_civ"]), updates=int(data["updates"])
        )


def _split(game: ClueGame) -> tuple[float, float]:
    """(r_spy, mean civilian reward) of one game."""
    n = len(game.rewards)
    if not 1 <= game.spy_seat <= n or n < 2:
        raise ValueError(f"spy seat {game.spy_seat} is not one of {n} seats (need at least 2)")
    civ = [r for seat, r in enumerate(game.rewards, 1) if seat != game.spy_seat]
    return float(game.rewards[game.spy_seat - 1]), math.fsum(civ) / len(civ)


def role_means(games: Sequence[ClueGame]) -> RoleMeans:
    """Per-role mean reward over `games` (the quantity ranks reduce before an update)."""
    if not games:
        return RoleMeans(0.0, 0.0, 0)
    parts = [_split(g) for g in games]
    return RoleMeans(
        spy=math.fsum(p[0] for p in parts) / len(parts),
        civ=math.fsum(p[1] for p in parts) / len(parts),
        games=len(parts),
    )


def combine_role_means(parts: Sequence[RoleMeans]) -> RoleMeans:
    """Game-weighted merge of per-rank `RoleMeans` (what an all-reduce must compute)."""
    total = sum(p.games for p in parts)
    if total == 0:
        return RoleMeans(0.0, 0.0, 0)
    return RoleMeans(
        spy=math.fsum(p.spy * p.games for p in parts) / total,
        civ=math.fsum(p.civ * p.games for p in parts) / total,
        games=total,
    )


def rae_update(state: RaeState, means: RoleMeans, alpha: float) -> RaeState:
    """One EMA step of both baselines toward the role means; no-op for an empty batch."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"rae alpha must be in [0, 1), got {alpha}")
    if means.games == 0:
        return state
    return RaeState(
        b_spy=alpha * state.b_spy + (1.0 - alpha) * means.spy,
        b_civ=alpha * state.b_civ + (1.0 - alpha) * means.civ,
        updates=state.updates + 1,
    )


def subtract_baseline(state: RaeState, game: ClueGame) -> list[float]:
    """Advantage of each seat: r - b_spy for the spy, r - b_civ for the civilians."""
    _split(game)  # validates the spy seat
    return [
        float(r) - (state.b_spy if seat == game.spy_seat else state.b_civ)
        for seat, r in enumerate(game.rewards, 1)
    ]


def rae_grouped(
    state: RaeState,
    games: Sequence[ClueGame],
    alpha: float,
    order: RaeOrder,
    means: RoleMeans | None = None,
) -> tuple[RaeState, list[list[float]]]:
    """One baseline update for a whole group of games, the same baseline for all of them.

    `means` defaults to `role_means(games)`; under data parallelism pass the means reduced
    across ranks so every rank makes the identical update. Returns (new state, per-game
    per-seat advantages).
    """
    if means is None:
        means = role_means(games)
    new = rae_update(state, means, alpha)
    used = new if order == "update_then_subtract" else state
    return new, [subtract_baseline(used, g) for g in games]


def rae_sequential(
    state: RaeState, games: Sequence[ClueGame], alpha: float, order: RaeOrder
) -> tuple[RaeState, list[list[float]]]:
    """Single-process RAE: each game updates the baselines in turn, in the given order.

    Deterministic: the result depends only on the state and the order of `games`.
    """
    out: list[list[float]] = []
    for game in games:
        state, (adv,) = rae_grouped(state, [game], alpha, order)
        out.append(adv)
    return state, out
