"""Win rate against a frozen opponent: mirrored games, candidate as spy and as civilians.

Every held-out pair is played twice with the same spy seat and the same sampling seeds:
once with the candidate in the spy's seat and the opponent in every civilian seat, once
the other way round. The side that holds the civilian seats also casts the votes (the
observer in `observer` voting, the civilians themselves in `civilians` voting); the spy
never votes. Civilians win only when the spy gets strictly more valid votes than every
other seat (`Game.spy_identified`); N/A, invalid votes and ties are wins for the spy.
The candidate's win rate is its share of won games over both halves, so two identical
models score 50% in expectation whatever their skill.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from visionzero.eval.routing import RoutingPolicy
from visionzero.game import Game
from visionzero.rollout.engine import GameEngine, RolloutStats, derive_seed, setup_games
from visionzero.rollout.types import Policy
from visionzero.settings.schema import GameSettings

Side = Literal["spy", "civilians"]
CANDIDATE, OPPONENT = 0, 1


@dataclass
class MatchGame:
    game: Game
    candidate: Side  # the side the candidate plays in this game

    @property
    def candidate_won(self) -> bool:
        return civilians_win(self.game) == (self.candidate == "civilians")


def civilians_win(game: Game) -> bool:
    """Civilians win only by naming the spy: strictly the most valid votes."""
    return game.spy_identified


def wilson_interval(wins: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there are no trials.

    Games are treated as independent; the mirrored halves share pairs, which makes the
    true interval narrower, so this one is conservative.
    """
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = wins / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    # exact ends: no wins cannot rule out 0, all wins cannot rule out 1 (no rounding residue)
    low = 0.0 if wins == 0 else max(0.0, centre - half)
    high = 1.0 if wins == n else min(1.0, centre + half)
    return low, high


def match_games(pairs: Sequence, settings: GameSettings, seed: int) -> list[MatchGame]:
    """Each pair twice (same spy seat): candidate as spy, then candidate as civilians."""
    out = []
    for side in ("spy", "civilians"):
        for game in setup_games(pairs, settings, seed):
            game.game_id = f"{game.game_id}~candidate-{side}"
            out.append(MatchGame(game, side))
    return out


def seat_router(matches: Sequence[MatchGame]) -> Callable[[Any], int]:
    """Route a request to CANDIDATE or OPPONENT by its game and seat.

    The spy's clue turns go to the spy side; every other clue turn and every vote
    (observer seat 0, or a civilian's own vote) goes to the civilian side.
    """
    sides = {m.game.game_id: (m.candidate, m.game.spy_seat) for m in matches}

    def route(request: Any) -> int:
        candidate_side, spy_seat = sides[request.game_id]
        side = "spy" if request.stage == "clue" and request.seat == spy_seat else "civilians"
        return CANDIDATE if side == candidate_side else OPPONENT

    return route


@dataclass
class MatchResult:
    matches: list[MatchGame]
    confidence: float = 0.95
    stats: RolloutStats | None = field(default=None, repr=False)

    def _wins(self, keep: Callable[[MatchGame], bool] = lambda m: True) -> tuple[int, int]:
        chosen = [m for m in self.matches if keep(m)]
        return sum(m.candidate_won for m in chosen), len(chosen)

    @property
    def win_rate(self) -> float:
        wins, n = self._wins()
        return wins / n if n else 0.0

    def metrics(self, prefix: str = "match/") -> dict[str, float]:
        """`win_rate` (the promotion metric) plus its interval, counts, per side and per domain."""
        wins, n = self._wins()
        low, high = wilson_interval(wins, n, self.confidence)
        spy_wins, spy_n = self._wins(lambda m: m.candidate == "spy")
        civ_wins, civ_n = self._wins(lambda m: m.candidate == "civilians")
        out = {
            "win_rate": wins / n if n else 0.0,
            f"{prefix}ci_low": low,
            f"{prefix}ci_high": high,
            f"{prefix}confidence": self.confidence,
            f"{prefix}games": float(n),
            f"{prefix}wins": float(wins),
            f"{prefix}as_spy": spy_wins / spy_n if spy_n else 0.0,
            f"{prefix}as_civilians": civ_wins / civ_n if civ_n else 0.0,
            f"{prefix}spy_identified": sum(civilians_win(m.game) for m in self.matches) / n if n else 0.0,
        }
        by_domain: dict[str, list[MatchGame]] = defaultdict(list)
        for m in self.matches:
            by_domain[m.game.domain].append(m)
        for domain, group in sorted(by_domain.items()):
            out[f"{prefix}{domain}/win_rate"] = sum(m.candidate_won for m in group) / len(group)
            out[f"{prefix}{domain}/games"] = float(len(group))
        return out


def play_match(
    candidate: Policy,
    opponent: Policy,
    pairs: Sequence,
    settings: GameSettings,
    seed: int,
    confidence: float = 0.95,
    on_turn: Callable[[str], None] | None = None,
) -> MatchResult:
    """Play the mirrored games of `pairs` in one batched run; each turn splits by seat."""
    matches = match_games(pairs, settings, seed)
    policy = RoutingPolicy([candidate, opponent], seat_router(matches))
    engine = GameEngine(policy, settings, on_turn=on_turn)
    stats = engine.play([m.game for m in matches], seed=derive_seed(seed, "match"))
    return MatchResult(matches, confidence, stats)
