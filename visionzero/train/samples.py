"""From played games to scored training samples. Pure Python: no torch.

`score_games` is the "verify role rewards" step: it reads only the game records (who was
the spy, each vote) and returns the decision rewards and group-normalised advantages, the
zero-sum clue rewards and their Role Advantage Estimation, and the batch statistics.
`training_samples` then picks the turns of the active stage and attaches each advantage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from visionzero.game import Game
from visionzero.rl.advantages import ClueGame, RaeState, rae_sequential
from visionzero.rl.rewards import (
    GameRewards,
    Vote,
    civilian_game_rewards,
    decision_reward,
    observer_game_rewards,
)
from visionzero.rl.stats import VoteGame, batch_stats, mean, na_warning
from visionzero.settings.schema import RewardSettings

Stage = Literal["clue", "decision"]


@dataclass
class TrainSample:
    """One completion to train on, with everything needed to recompute its log-probs."""

    prompt_ids: list[int]  # includes the expanded image tokens
    completion_ids: list[int]  # includes the end-of-turn token when it was emitted
    images: list[str]  # image refs in prompt order (paths or blank:WxH)
    advantage: float
    stage: Stage
    temperature: float = 1.0  # sampling temperature: log-probs are taken at the same T
    old_logprobs: list[float] | None = field(default=None)  # behaviour log-probs, if recorded
    # decision samples: the reward of voting seat 1..n, then of any other answer (train.vote_gradient)
    choice_rewards: list[float] | None = field(default=None)


@dataclass
class ScoredGames:
    rewards: list[GameRewards]  # per game: decision rewards/advantages per vote, clue reward per seat
    clue_advantages: list[list[float]]  # per game, per seat (index seat-1): r - b_role
    rae: RaeState  # baselines after this batch
    stats: dict[str, float]
    warning: str | None  # the N/A-trap warning, when the N/A rate is high
    # per game, per decision turn: the reward each seat 1..n would have earned, then any other answer
    choice_rewards: list[list[list[float]]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "rewards": [r._asdict() for r in self.rewards],
            "clue_advantages": self.clue_advantages,
            "rae": self.rae.to_dict(),
            "stats": self.stats,
            "warning": self.warning,
            "choice_rewards": self.choice_rewards,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ScoredGames":
        rewards = [GameRewards(**{k: tuple(v) for k, v in r.items()}) for r in data["rewards"]]
        return cls(rewards, data["clue_advantages"], RaeState.from_dict(data["rae"]), data["stats"], data["warning"],
                   data.get("choice_rewards", []))  # fmt: skip


def _votes(game: Game) -> list[Vote]:
    return [Vote(v.kind, v.seat, v.format_ok) for v in game.votes]


def score_games(games: Sequence[Game], settings: RewardSettings, rae: RaeState) -> ScoredGames:
    """Rewards, advantages and statistics for a batch of finished games."""
    rewards = []
    for g in games:
        if g.settings.voting == "observer":
            rewards.append(observer_game_rewards(_votes(g), g.spy_seat, g.n_players, settings))
        else:
            by_seat = {t.seat: Vote(t.vote.kind, t.vote.seat, t.vote.format_ok) for t in g.decision_turns}
            rewards.append(civilian_game_rewards(by_seat, g.spy_seat, g.n_players, settings))
    clue_games = [ClueGame(r.clue, g.spy_seat) for r, g in zip(rewards, games)]
    # One baseline step per game, in the batch's game order (METHOD.md section 4).
    new_rae, clue_adv = rae_sequential(rae, clue_games, settings.rae_alpha, settings.rae_order)
    stats = batch_stats(
        [VoteGame(_votes(g), g.spy_seat) for g in games], [r.decision for r in rewards], clue_games, new_rae
    )
    stats["spy_identified"] = sum(g.spy_identified for g in games) / max(1, len(games))
    stats["clue_valid_rate"] = mean([t.clue.valid for g in games for t in g.clue_turns()])
    first = games[0] if games else None
    warning = (
        na_warning(stats["na_rate"], settings, first.n_players, first.settings.voting) if first else None
    )
    return ScoredGames(rewards, clue_adv, new_rae, stats, warning, [choice_rewards(g, settings) for g in games])


def choice_rewards(game: Game, settings: RewardSettings) -> list[list[float]]:
    """Per decision turn: the verifiable reward of naming each seat 1..n, then of any other
    answer (scored as invalid), with the turn's own format flag: what every possible vote
    would have earned, for the vote gradient taken in expectation (train.vote_gradient)."""
    out = []
    for t in game.decision_turns:
        fmt = t.vote.format_ok if t.vote else False
        seats = [decision_reward(Vote("seat", k, fmt), game.spy_seat, settings) for k in range(1, game.n_players + 1)]
        out.append([*seats, decision_reward(Vote("invalid", None, fmt), game.spy_seat, settings)])
    return out


def training_samples(games: Sequence[Game], scored: ScoredGames, stage: Stage) -> list[TrainSample]:
    """The active stage's turns as samples; the other stage's turns are not returned at all."""
    samples = []
    choices = scored.choice_rewards or [None] * len(games)
    for game, rewards, seat_adv, game_choices in zip(games, scored.rewards, scored.clue_advantages, choices):
        if stage == "clue":
            temperature = game.settings.clue.temperature
            for turn in game.clue_turns():
                samples.append(_sample(turn, seat_adv[turn.seat - 1], stage, temperature))
        else:
            temperature = game.settings.decision.temperature
            for i, (turn, adv) in enumerate(zip(game.decision_turns, rewards.decision_advantages)):
                samples.append(_sample(turn, adv, stage, temperature, game_choices[i] if game_choices else None))
    return [s for s in samples if s.completion_ids]


def _sample(turn, advantage: float, stage: Stage, temperature: float, choices: list[float] | None = None) -> TrainSample:
    if turn.prompt_ids is None or turn.completion_ids is None:
        raise ValueError("game records without token ids cannot be trained on (was the backend text-only?)")
    return TrainSample(
        prompt_ids=list(turn.prompt_ids),
        completion_ids=list(turn.completion_ids),
        images=[turn.image],
        advantage=float(advantage),
        stage=stage,
        temperature=temperature if temperature > 0 else 1.0,
        old_logprobs=list(turn.logprobs) if turn.logprobs else None,
        choice_rewards=choices,
    )
