"""`vision-zero pairs`: generate a dataset of image pairs (images, manifest, contact sheet)."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionzero.cli.common import CliError, add_settings_args, settings_from_args

SHEET_NAME = "contact_sheet.png"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pairs", help="generate (original, edited) image pairs: CLEVR-style scenes, charts or photos")
    add_settings_args(parser)
    parser.add_argument("--domain", choices=["clevr", "chart", "photo"], help="domain (default: first of pairs.domains)")
    parser.add_argument("--n", type=int, help="pairs to make, train + eval (default: pairs.n_train + pairs.n_eval)")
    parser.add_argument("--n-eval", type=int, help="how many of them are held-out eval pairs (default: the settings' share)")
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder (new, empty, or an earlier dataset)")
    parser.add_argument("--source", metavar="DIR", help="photo folder: images, or ready *_original/*_modified pairs "
                        "(default: pairs.photo.source, else scikit-image's photos)")
    parser.add_argument("--seed", type=int, help="master seed (default: runtime.seed)")
    parser.add_argument("--workers", type=int, help="worker processes; 0 = one per core (default: pairs.workers)")
    parser.add_argument("--sheet", type=int, default=8, metavar="K", help=f"pairs on DIR/{SHEET_NAME} (0: none; default 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_pairs)


def _pairs(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visionzero.pairs import (
        ManifestError,
        OutputError,
        SourceError,
        generate_pairs,
        make_contact_sheet,
    )
    from visionzero.pairs.generate import WorkerLost, default_n_eval

    settings = settings_from_args(args)
    pairs = settings.pairs
    domain = args.domain or pairs.domains[0]
    n = args.n if args.n is not None else pairs.n_train + pairs.n_eval
    if n < 1:
        raise CliError(f"--n must be at least 1 (got {n})")
    n_eval = args.n_eval if args.n_eval is not None else default_n_eval(pairs, n)
    if not 0 <= n_eval <= n:
        raise CliError(f"--n-eval must be between 0 and --n ({n}) (got {n_eval})")
    if args.workers is not None and args.workers < 0:
        raise CliError(f"--workers must be 0 or more (got {args.workers})")
    if args.source and domain != "photo":
        raise CliError("--source is for --domain photo")
    seed = settings.runtime.seed if args.seed is None else args.seed

    with tqdm(total=n, desc=f"{domain} pairs", unit="pair", disable=args.no_progress) as bar:
        try:
            report = generate_pairs(pairs, domain, n, args.out, seed=seed, n_eval=n_eval, source=args.source,
                                    workers=args.workers, progress=bar.update)
        except (SourceError, OutputError, ManifestError, WorkerLost) as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:  # settings that cannot work, e.g. objects that do not fit
            raise CliError(str(exc)) from None
    if report.skipped_line:
        print(report.skipped_line)
    for note in report.notes:
        print(f"note: {note}")
    sheet = ""
    if args.sheet > 0:
        path = make_contact_sheet(report.out_dir, Path(report.out_dir) / SHEET_NAME, n=args.sheet, records=report.records)
        sheet = f"; contact sheet {path}"
    total = len(report.records)
    print(
        f"{total} {domain} pairs ({report.n_train} train, {report.n_eval} eval) in {report.out_dir} "
        f"in {report.seconds:.1f} s ({total / max(report.seconds, 1e-9):.1f} pairs/s){sheet}"
    )
    return 0
