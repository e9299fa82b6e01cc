"""`vision-zero params`: show or check the resolved settings."""

from __future__ import annotations

import argparse
import json

from visionzero.cli.common import add_settings_args, settings_from_args
from visionzero.settings import flatten
from visionzero.settings.render import render_yaml


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("params", help="show or check the settings (params.yaml + --set overrides)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    show = actions.add_parser("show", help="print the resolved settings as commented YAML")
    add_settings_args(show)
    show.add_argument("--format", choices=["yaml", "json", "flat"], default="yaml", help="output format")
    show.add_argument("--no-comments", action="store_true", help="YAML without the field descriptions")
    show.set_defaults(func=_show)

    check = actions.add_parser("check", help="validate the settings; exit 2 with one line if they are bad")
    add_settings_args(check)
    check.set_defaults(func=_check)


def _show(args: argparse.Namespace) -> int:
    from visionzero.settings.secrets import redact_text, redacted_dict

    settings = settings_from_args(args)
    if args.format == "json":  # (terminal output ends up in CI logs: credentials masked)
        print(json.dumps(redacted_dict(settings), indent=2))
    elif args.format == "flat":
        for key, value in flatten(redacted_dict(settings)).items():
            print(f"{key}={json.dumps(value)}")
    else:
        print(redact_text(render_yaml(settings, comments=not args.no_comments)))
    return 0


def _check(args: argparse.Namespace) -> int:
    settings_from_args(args)
    print(f"{args.params}: ok")
    return 0
