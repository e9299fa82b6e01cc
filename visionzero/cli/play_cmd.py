"""`vision-zero play`: the configured model plays games on a pair set; records + HTML viewer."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from visionzero.cli.common import CliError, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("play", help="play 'Who is the spy?' games and write records and an HTML viewer")
    add_settings_args(parser)
    parser.add_argument("--pairs", required=True, nargs="+", metavar="DIR", help="dataset folder(s) with manifest.jsonl")
    parser.add_argument("--games", type=int, default=8, help="number of games (default 8)")
    parser.add_argument("--split", choices=["train", "eval"], default="eval", help="which pairs to use (default eval)")
    parser.add_argument("--out", default="games.html", help="HTML viewer path (records go beside it as .jsonl)")
    parser.add_argument("--spec", help="model spec (default: the starting model: model.spec, or the tiny model's base stage)")
    parser.set_defaults(func=_play)


def _play(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visionzero.game import write_records
    from visionzero.game.rules import clue_turn_order
    from visionzero.game.viewer import write_viewer
    from visionzero.models import ModelLoadError, load_model
    from visionzero.rollout.engine import GameEngine, setup_games
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.train.loop import pair_pool

    settings = settings_from_args(args)
    if args.games < 1:
        raise CliError("--games must be at least 1")
    try:
        pool = pair_pool(args.pairs, args.split)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    pairs = [pool[i % len(pool)] for i in range(args.games)]
    try:
        from visionzero.base.stage import starting_spec

        loaded = load_model(settings.model, settings.runtime, spec=args.spec or starting_spec(settings))
    except ModelLoadError as exc:
        raise CliError(str(exc)) from None
    games = setup_games(pairs, settings.game, settings.runtime.seed)
    turns = len(clue_turn_order(settings.game)) + 1
    start = time.perf_counter()
    with tqdm(total=turns, desc="playing", unit="turn") as bar:
        engine = GameEngine(HFPolicy(loaded, settings.rollout.micro_batch_size), settings.game, on_turn=lambda label: (bar.set_postfix_str(label), bar.update()))
        stats = engine.play(games, seed=settings.runtime.seed)
    out = Path(args.out)
    records = write_records(out.with_suffix(".jsonl"), games)
    write_viewer(out, games, title=f"{len(games)} games, {loaded.path}")
    found = sum(g.spy_identified for g in games)
    print(
        f"{len(games)} games in {time.perf_counter() - start:.1f} s ({stats.tokens_per_s:.0f} tokens/s); "
        f"spy identified in {found}; records {records}; viewer {out}"
    )
    return 0
