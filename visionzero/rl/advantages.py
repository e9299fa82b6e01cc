"""Role Advantage Estimation (RAE) for the clue stage.

The spy sees less than the civilians, so each role keeps its own baseline, an exponential
moving average of that role's clue reward (paper Eq. 2, METHOD.md section 4):

    b_spy <- a*b_spy + (1-a)*r_spy        b_civ <- a*b_civ + (1-a)*mean_j r_cj

both starting at 0. A player's advantage is r - b_role, given unchanged to every clue it
spoke in the game. Clue advantages get no std normalisation (the rewards are zero-sum).

Order (settings.rae_order): `update_then_subtract` (released code) lets the current game
enter the baseline before it is subtracted; `subtract_then_update` subtracts the baseline
built from earlier games only (a baseline independent of the sample, as in textbook REINFORCE).

Data parallelism: all ranks must share one baseline. Each rank computes `role_means` of its
own games, the distributed code reduces them across ranks (`combine_role_means`, or an
all-reduce of `spy * games`, `civ * games` and `games`), then every rank calls
`rae_grouped(state, its_games, alpha, order, means=reduced)`: one update from the global
means and the same baseline subtracted on every rank. The released code does exactly this
with one game per rank per micro-step.
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


def clue_turn_advantages(seat_advantages: Sequence[float], speakers: Sequence[int]) -> list[float]:
    """Advantage of each clue turn: the advantage of the seat that spoke it (1-based)."""
    return [seat_advantages[s - 1] for s in speakers]
