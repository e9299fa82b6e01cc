"""`vision-zero train`: Iterative-SPO on a pair set, resumable, with a progress bar."""

from __future__ import annotations

import argparse
import logging

from visionzero.cli.common import CliError, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train with Iterative-SPO (resumes from the run's last checkpoint)")
    add_settings_args(parser)
    parser.add_argument("--pairs", required=True, nargs="+", metavar="DIR", help="dataset folder(s) with manifest.jsonl")
    parser.add_argument("--run-dir", default=None, help="run folder (default: <runtime.workdir>/train)")
    parser.add_argument("--iterations", type=int, default=None, help="stop after this many (default: train.iterations)")
    parser.add_argument("--restart", action="store_true", help="discard the run folder's checkpoints if their settings differ")
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from visionzero.models import ModelLoadError
    from visionzero.rollout.remote import WorkerError
    from visionzero.train.loop import IterativeSPO, RunLocked, lock_run_dir, pair_pool

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.iterations is not None and args.iterations < 1:
        raise CliError(f"--iterations must be at least 1 (got {args.iterations})")
    settings = settings_from_args(args)
    run_dir = Path(args.run_dir or Path(settings.runtime.workdir) / "train")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)  # a busy run folder is said first, before anything is loaded
        pool = pair_pool(args.pairs, "train")
        spo = IterativeSPO(settings, run_dir, pool, restart_on_change=args.restart)
    except (ModelLoadError, OSError, ValueError, WorkerError, RunLocked) as exc:
        raise CliError(str(exc)) from None
    target = args.iterations if args.iterations is not None else settings.train.iterations
    if spo.iteration:
        print(f"resuming {run_dir} at iteration {spo.iteration}")
    with tqdm(total=target, initial=spo.iteration, desc="iterative-spo", unit="it") as bar:

        def show(m: dict) -> None:
            bar.set_postfix(
                stage=m["stage"], acc=f"{m['game/vote_accuracy']:.2f}", na=f"{m['game/na_rate']:.2f}",
                reward=f"{m['game/decision_reward_mean']:+.2f}",
            )  # fmt: skip
            bar.update()

        try:
            spo.train(target, on_iteration=show)
        except WorkerError as exc:  # the generation worker died or refused a checkpoint
            raise CliError(f"{exc} (checkpoints so far are kept; the next run resumes)") from None
        finally:
            spo.close()
    print(f"done: {spo.iteration} iterations; checkpoints {run_dir / 'checkpoints'}; metrics {run_dir / 'metrics.jsonl'}")
    return 0
