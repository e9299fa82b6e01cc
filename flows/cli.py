"""Shared command line of the flow scripts: --params and --set, as everywhere else, and
one closing error line when a flow fails (Prefect has logged the failing task above it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from visionzero.errors import first_line
from visionzero.settings import SettingsError, load_settings
from visionzero.tracking.connection import credentials_out_of


def parse(description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="settings file (default params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    # Prefect stores flow parameters: a tracking URI's credentials go to MLflow's env vars instead
    args.overrides = credentials_out_of(args.overrides)
    try:
        load_settings(args.params, args.overrides)  # fail fast, one line, before Prefect starts
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return args


def run(flow: Callable[[str, list[str]], Any], description: str, show: Callable[[Any], None] = print) -> None:
    """`python -m flows.X`: parse, run the flow, show its result; a failure ends in one line, exit 1."""
    args = parse(description)
    try:
        result = flow(args.params, args.overrides)
    except Exception as exc:  # noqa: BLE001 - the task's traceback is already in Prefect's log
        print(f"error: {getattr(flow, 'name', 'flow')} failed: {first_line(exc)}", file=sys.stderr)
        raise SystemExit(1) from None
    show(result)
