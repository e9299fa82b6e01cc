"""`vision-zero step`: one part of an Iterative-SPO iteration, for a pipeline that runs its
heavy steps in another Python environment (`runtime.python`).

Each call resumes the run from its newest checkpoint, does one step and exits; `update`
always checkpoints so the next process continues from it. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json

from visionzero.cli.common import CliError, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("step", help="run one step of an iteration (play, score or update) and print JSON")
    add_settings_args(parser)
    parser.add_argument("name", choices=["play", "score", "update"])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--pairs", required=True, nargs="+", metavar="DIR")
    parser.add_argument("--games", help="games.jsonl (score, update)")
    parser.add_argument("--scores", help="scores.json (update)")
    parser.set_defaults(func=_step)


def _step(args: argparse.Namespace) -> int:
    from visionzero.rollout.remote import WorkerError
    from visionzero.train.loop import IterativeSPO, pair_pool

    settings = settings_from_args(args)
    try:
        spo = IterativeSPO(settings, args.run_dir, pair_pool(args.pairs, "train"), restart_on_change=True)
    except (OSError, ValueError, WorkerError) as exc:
        raise CliError(str(exc)) from None
    try:
        if args.name == "play":
            result = {"games": str(spo.play())}
        elif args.name == "score":
            result = {"scores": str(spo.score(args.games))}
        else:
            result = spo.update(args.games, args.scores, checkpoint=True)
    except WorkerError as exc:  # the generation worker died or refused a checkpoint
        raise CliError(str(exc)) from None
    finally:
        spo.close()
    print(json.dumps(result))
    return 0
