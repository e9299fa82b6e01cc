"""One evaluation: held-out self-play games, the match against a frozen opponent, and VQA.

`evaluate_policies` runs everything on policies (tests use scripted ones); `evaluate`
loads the models from specs first. The results are a flat dict of numbers whose keys are
stable (README of the keys: docs/architecture.md, "Evaluation"); timings are kept apart
so the same models and settings always give the same results file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from visionzero.eval.game_eval import clue_scene_metrics, game_metrics, play_selfplay, scene_colors
from visionzero.eval.heldout import EvalSet, build_eval_set, first_per_domain, heldout_pairs
from visionzero.eval.vqa import VqaAnswer, evaluate_vqa, vqa_metrics
from visionzero.eval.winrate import MatchResult, play_match
from visionzero.game import Game
from visionzero.game.rules import clue_turn_order
from visionzero.rollout.engine import derive_seed
from visionzero.rollout.types import Policy, Sampling
from visionzero.settings import Settings
from visionzero.settings.schema import GameSettings

Progress = Callable[[str], None]


@dataclass
class EvalReport:
    metrics: dict[str, float]
    eval_set: EvalSet
    selfplay: list[Game]
    match: MatchResult | None
    answers: list[VqaAnswer]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per part (not in metrics)
    tokens: dict[str, int] = field(default_factory=dict)  # generated tokens per game part
    model: str = ""  # where the candidate's weights came from
    opponent: str = ""


def match_pairs(eval_set: EvalSet, games: int) -> list:
    """The match's pairs: ceil(games / 2) per domain, each played twice (= `games` games)."""
    return first_per_domain(eval_set.pairs, math.ceil(games / 2))


def count_steps(eval_set: EvalSet, settings: Settings, with_match: bool = True) -> int:
    """Progress steps of `evaluate_policies`: one per batched turn and per VQA batch."""
    turns = len(clue_turn_order(settings.game)) + 1
    batches = math.ceil(len(eval_set.questions) / settings.rollout.micro_batch_size)
    return turns + (turns if with_match else 0) + batches


def eval_game_settings(settings: Settings) -> GameSettings:
    """The rules the held-out games are played by: the game's, with eval.temperature (when
    set) on the clue and vote turns. Greedy by default: sampling at the training temperature
    scores a policy's noise along with its choices (a vote that puts 0.45 on the right seat
    is right 45% of the time sampled, every time greedy)."""
    temperature = settings.eval.temperature
    game = settings.game
    if temperature is None:
        return game
    return game.model_copy(update={
        "clue": game.clue.model_copy(update={"temperature": temperature}),
        "decision": game.decision.model_copy(update={"temperature": temperature}),
    })  # fmt: skip


def vqa_sampling(settings: Settings) -> Sampling:
    return Sampling(settings.eval.max_new_tokens, settings.eval.vqa_temperature)


def evaluate_policies(
    candidate: Policy,
    opponent: Policy | None,
    eval_set: EvalSet,
    settings: Settings,
    progress: Progress | None = None,
) -> EvalReport:
    """Self-play games, the mirrored match (when an opponent is given) and VQA, all seeded by eval.seed."""
    seed = settings.eval.seed
    seconds: dict[str, float] = {}
    tokens: dict[str, int] = {}
    t0 = time.perf_counter()
    rules = eval_game_settings(settings)
    games, stats = play_selfplay(candidate, eval_set.pairs, rules, seed, on_turn=progress)
    seconds["selfplay"], tokens["selfplay"] = time.perf_counter() - t0, stats.generated_tokens
    metrics = game_metrics(games)
    metrics.update(clue_scene_metrics(games, scene_colors(eval_set.pairs)))
    match = None
    if opponent is not None:
        t0 = time.perf_counter()
        pairs = match_pairs(eval_set, settings.eval.games)
        match = play_match(candidate, opponent, pairs, rules, seed, settings.eval.confidence, on_turn=progress)
        seconds["match"] = time.perf_counter() - t0
        tokens["match"] = match.stats.generated_tokens if match.stats else 0
        metrics.update(match.metrics())
    t0 = time.perf_counter()
    answers = evaluate_vqa(
        candidate, eval_set.questions, vqa_sampling(settings), derive_seed(seed, "vqa"),
        batch_size=settings.rollout.micro_batch_size, on_batch=progress,
    )  # fmt: skip
    seconds["vqa"] = time.perf_counter() - t0
    metrics.update(vqa_metrics(answers))
    seconds["total"] = sum(seconds.values())
    return EvalReport(metrics, eval_set, games, match, answers, seconds, tokens)


def load_eval_set(dataset_dirs: Sequence[str | Path], settings: Settings) -> EvalSet:
    """The fixed evaluation set of the held-out pairs in `dataset_dirs` (ValueError/OSError if none)."""
    return build_eval_set(heldout_pairs(dataset_dirs), settings.eval)


def load_players(
    settings: Settings,
    model: str | None = None,
    opponent: str | None = None,
    in_memory: tuple[Policy | None, Policy | None] = (None, None),
) -> tuple[Policy, Policy | None, str, str]:
    """(candidate, opponent, candidate path, opponent path) for model spec `model` (default:
    the starting model) and `opponent` (default eval.opponent; 'base' = the starting model:
    model.spec, or with the base stage on the tiny model, the base stage's output).

    `in_memory` = (current policy, starting model) already loaded by a training run: used
    instead of loading `model` and the base again. A spec is loaded at most once.
    """
    from visionzero.base.stage import starting_spec
    from visionzero.models import load_model
    from visionzero.rollout.hf_backend import HFPolicy

    start = starting_spec(settings)
    model_spec = model or start
    opponent_spec = opponent or settings.eval.opponent
    if opponent_spec == "base":
        opponent_spec = start
    loaded: dict[str, tuple[Policy, str]] = {}

    def policy(spec: str) -> tuple[Policy, str]:
        if spec not in loaded:  # the same spec twice: two players over one frozen model
            m = load_model(settings.model, settings.runtime, spec=spec)
            loaded[spec] = (HFPolicy(m, settings.rollout.micro_batch_size), m.path)
        return loaded[spec]

    live, base = in_memory
    candidate, model_path = (live, model_spec) if live is not None else policy(model_spec)
    if not settings.eval.match:  # self-play and VQA only: no opponent is loaded
        return candidate, None, model_path, ""
    if base is not None and opponent_spec == start:
        other, opponent_path = base, start
    else:
        other, opponent_path = policy(opponent_spec)
    return candidate, other, model_path, opponent_path


def evaluate(
    settings: Settings,
    dataset_dirs: Sequence[str | Path],
    model: str | None = None,
    opponent: str | None = None,
    progress: Progress | None = None,
    in_memory: tuple[Policy | None, Policy | None] = (None, None),
) -> EvalReport:
    """Evaluate model spec `model` against `opponent` (see `load_players`) on the fixed set of
    the held-out pairs in `dataset_dirs` (see `load_eval_set`)."""
    eval_set = load_eval_set(dataset_dirs, settings)
    candidate, other, model_path, opponent_path = load_players(settings, model, opponent, in_memory)
    report = evaluate_policies(candidate, other, eval_set, settings, progress)
    report.model, report.opponent = model_path, opponent_path
    return report
