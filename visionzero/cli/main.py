"""The `vision-zero` command line. Each command lives in its own module with a `register`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from visionzero import __version__
from visionzero.cli.common import run_command

# Command modules, in the order `--help` lists them.
COMMANDS = [
    "visionzero.cli.params_cmd",
    "visionzero.cli.pairs_cmd",
    "visionzero.cli.model_cmd",
    "visionzero.cli.play_cmd",
    "visionzero.cli.train_cmd",
    "visionzero.cli.step_cmd",
    "visionzero.cli.eval_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vision-zero",
        description="Vision-Zero: VLM self-improvement by 'Who is the spy?' self-play.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
