"""Shared CLI plumbing: the --params/--set options and one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from visionzero.settings import DEFAULT_PARAMS, Settings, SettingsError, load_settings

EXIT_USAGE = 2


class CliError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


def add_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default=DEFAULT_PARAMS, metavar="PATH",
        help=f"settings file (default: {DEFAULT_PARAMS}; schema defaults if absent)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set game.rounds=3 (repeatable; value parsed as YAML)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(args.params, args.overrides)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"vision-zero: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_command(args: argparse.Namespace) -> int:
    """Call the chosen command; user errors become one line and exit code 2."""
    try:
        return int(args.func(args) or 0)
    except (SettingsError, CliError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
