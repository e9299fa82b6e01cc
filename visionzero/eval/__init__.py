"""Evaluation: held-out games, win rate against a frozen opponent, verifiable VQA.

Everything is computed on a fixed, seeded evaluation set (`heldout.EvalSet`), so two
models are compared on identical pairs, spy seats, questions and sampling seeds. The
results are one flat dict of numbers (`results.py` writes it as JSON for DVC and appends
it to a per-iteration curve); `runner.evaluate` loads the models and runs all three.
"""

from visionzero.eval.game_eval import game_metrics, play_selfplay
from visionzero.eval.heldout import EvalPair, EvalSet, build_eval_set, heldout_pairs
from visionzero.eval.results import append_curve, read_curve, read_results, write_results
from visionzero.eval.routing import RoutingPolicy
from visionzero.eval.runner import (
    EvalReport,
    evaluate,
    evaluate_policies,
    load_eval_set,
    load_players,
)
from visionzero.eval.vqa import evaluate_vqa, vqa_metrics
from visionzero.eval.vqa_questions import (
    Question,
    check_answer,
    questions_for_record,
    vqa_questions,
)
from visionzero.eval.winrate import (
    MatchResult,
    civilians_win,
    match_games,
    play_match,
    wilson_interval,
)

__all__ = [
    "EvalPair",
    "EvalReport",
    "EvalSet",
    "MatchResult",
    "Question",
    "RoutingPolicy",
    "append_curve",
    "build_eval_set",
    "check_answer",
    "civilians_win",
    "evaluate",
    "evaluate_policies",
    "evaluate_vqa",
    "game_metrics",
    "heldout_pairs",
    "load_eval_set",
    "load_players",
    "match_games",
    "play_match",
    "play_selfplay",
    "questions_for_record",
    "read_curve",
    "read_results",
    "vqa_metrics",
    "vqa_questions",
    "wilson_interval",
    "write_results",
]
