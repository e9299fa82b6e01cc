"""`vision-zero eval`: held-out games, win rate against a frozen opponent, verifiable VQA."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from visionzero.cli.common import CliError, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="evaluate a model: held-out games, win rate against a frozen opponent, verifiable VQA"
    )
    add_settings_args(parser)
    parser.add_argument("--model", default=None, metavar="SPEC", help="model to evaluate: tiny, a folder, a checkpoint's model/ folder or a hub id (default: model.spec)")
    parser.add_argument("--opponent", default=None, metavar="SPEC", help="frozen opponent for the win rate (default: eval.opponent; 'base' = model.spec)")
    parser.add_argument("--no-match", action="store_true", help="held-out self-play and VQA only: no opponent, no win rate (= --set eval.match=false)")
    parser.add_argument("--pairs", required=True, nargs="+", metavar="DIR", help="dataset folder(s) with manifest.jsonl; only their eval pairs are used")
    parser.add_argument("--out", default="eval.json", metavar="PATH", help="results JSON, flat {metric: number} (default: eval.json)")
    parser.add_argument("--records", default=None, metavar="DIR", help="also write the games and VQA answers here (JSONL) with a match viewer")
    parser.add_argument("--curve", default=None, metavar="PATH", help="append the results to this per-iteration curve (JSONL); needs --iteration")
    parser.add_argument("--iteration", type=int, default=None, help="training iteration the model comes from (for --curve)")
    parser.set_defaults(func=_eval)


def _write_records(folder: Path, report) -> None:
    from visionzero.game import write_records
    from visionzero.game.viewer import write_viewer

    write_records(folder / "selfplay.jsonl", report.selfplay)
    if report.match is not None:
        games = [m.game for m in report.match.matches]
        write_records(folder / "match.jsonl", games)
        write_viewer(folder / "match.html", games, title=f"match: {report.model} vs {report.opponent}")
    with open(folder / "vqa.jsonl", "w", encoding="utf-8") as fh:
        for a in report.answers:
            row = {"id": a.question.id, "qtype": a.question.qtype, "question": a.question.text,
                   "answer": a.question.answer, "response": a.response, "correct": a.correct}
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def _eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visionzero.eval.results import append_curve, write_results
    from visionzero.eval.runner import count_steps, evaluate_policies, load_eval_set, load_players
    from visionzero.models import ModelLoadError

    settings = settings_from_args(args)
    if args.no_match:
        settings.eval.match = False
    if (args.curve is None) != (args.iteration is None):
        raise CliError("--curve and --iteration go together")
    try:
        eval_set = load_eval_set(args.pairs, settings)
        candidate, opponent, model_path, opponent_path = load_players(settings, args.model, args.opponent)
    except ModelLoadError as exc:
        raise CliError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    with tqdm(total=count_steps(eval_set, settings, with_match=settings.eval.match), desc="evaluating", unit="turn") as bar:

        def step(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update()

        report = evaluate_policies(candidate, opponent, eval_set, settings, progress=step)
    report.model, report.opponent = model_path, opponent_path
    m = report.metrics
    out = write_results(args.out, m)
    if args.curve:
        append_curve(args.curve, args.iteration, m)
    if args.records:
        _write_records(Path(args.records), report)
    secs = report.seconds
    against = f" vs {report.opponent}" if report.match is not None else " (self-play only)"
    print(f"model {report.model}{against}; eval set {report.eval_set.fingerprint()}")
    if report.match is not None:
        print(
            f"win rate {m['win_rate']:.3f} [{m['match/ci_low']:.3f}, {m['match/ci_high']:.3f}] over {m['match/games']:.0f} games "
            f"(as spy {m['match/as_spy']:.2f}, as civilians {m['match/as_civilians']:.2f})"
        )
    print(
        f"self-play {m['game/games']:.0f} games: spy identified {m['game/spy_identified']:.2f}, "
        f"vote accuracy {m['game/vote_accuracy']:.2f} (best constant seat {m['game/best_constant_seat_accuracy']:.2f}), N/A {m['game/na_rate']:.2f}, invalid {m['game/invalid_rate']:.2f}, "
        f"valid clues {m['game/clue_valid_rate']:.2f}"
    )
    if m.get("vqa/questions"):
        print(f"VQA {m['vqa/questions']:.0f} questions: accuracy {m['vqa/accuracy']:.3f}")
    game_tokens = sum(report.tokens.values())
    game_secs = secs["selfplay"] + secs.get("match", 0.0)
    print(
        f"time {secs['total']:.1f} s (self-play {secs['selfplay']:.1f}, match {secs.get('match', 0):.1f}, "
        f"vqa {secs['vqa']:.1f}; games {game_tokens} tokens, {game_tokens / max(game_secs, 1e-9):.0f} tokens/s); results {out}"
    )
    if settings.eval.match and settings.registry.metric not in m:
        print(f"vision-zero: warning: the promotion metric {settings.registry.metric!r} is not among the results", file=sys.stderr)
    return 0
