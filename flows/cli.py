"""Shared command line of the flow scripts: --params and --set, as everywhere else."""

from __future__ import annotations

import argparse
import sys

from visionzero.settings import SettingsError, load_settings


def parse(description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="settings file (default params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        load_settings(args.params, args.overrides)  # fail fast, one line, before Prefect starts
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return args
