"""Benchmark: image pairs per second for each domain, and the time for 2,000 CLEVR-style pairs.

    python bench/bench_pairs.py                      # schema defaults (448 px, 4-6 objects), all cores
    python bench/bench_pairs.py --n 60 --n-clevr 500 --workers 1 --json out.json

Every run writes real datasets (PNGs + manifest) into a temporary folder, exactly as
`vision-zero pairs` does, and deletes them afterwards. The paper rendered its 2,000 CLEVR
pairs with Blender in about 6 A100-hours; the goal here is under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
from pathlib import Path

from visionzero.pairs import generate_pairs
from visionzero.settings import load_settings
from visionzero.settings.schema import PairsSettings


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(settings: PairsSettings, domain: str, n: int, workers: int, root: Path) -> dict:
    out = root / domain
    cpu = _cpu_seconds()
    report = generate_pairs(settings, domain, n, out, seed=0, workers=workers)
    cpu = _cpu_seconds() - cpu
    size = sum(p.stat().st_size for p in (out / "images").iterdir())
    shutil.rmtree(out)
    pairs = len(report.records)
    return {"domain": domain, "pairs": pairs, "seconds": round(report.seconds, 2),
            "pairs_per_s": round(pairs / report.seconds, 1), "cpu_s": round(cpu, 1),
            "pairs_per_cpu_s": round(pairs / cpu, 1), "mb": round(size / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="pairs per domain for the pairs/s figures (default 200)")
    ap.add_argument("--n-clevr", type=int, default=2000, help="CLEVR pairs for the timed run (default 2000)")
    ap.add_argument("--workers", type=int, default=0, help="worker processes; 0 = one per core (default)")
    ap.add_argument("--params", help="params.yaml to take the pairs section from (default: schema defaults)")
    ap.add_argument("--domains", default="clevr,chart,photo", help="comma-separated domains (default all)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    settings = load_settings(args.params).pairs if args.params else PairsSettings()
    load = os.getloadavg()
    workers = args.workers or os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="vz-bench-pairs-") as tmp:
        for domain in args.domains.split(","):
            rows.append(run(settings, domain, args.n, workers, Path(tmp)))
        big = run(settings, "clevr", args.n_clevr, workers, Path(tmp)) if args.n_clevr else None

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; workers {workers}; "
          f"image {settings.image_size} px; clevr {settings.clevr.min_objects}-{settings.clevr.max_objects} objects")
    print(f"load average before: {load[0]:.2f} (other processes share these cores; CPU seconds do not depend on them)")
    print(f"{'domain':<8}{'pairs':>7}{'wall s':>9}{'pairs/s':>9}{'CPU s':>8}{'pairs/CPU s':>13}{'MB':>7}")
    for r in rows:
        print(f"{r['domain']:<8}{r['pairs']:>7}{r['seconds']:>9.2f}{r['pairs_per_s']:>9.1f}{r['cpu_s']:>8.1f}"
              f"{r['pairs_per_cpu_s']:>13.1f}{r['mb']:>7.1f}")
    if big:
        verdict = "under" if big["seconds"] < 60 else "OVER"
        print(f"{big['pairs']} CLEVR-style pairs: {big['seconds']:.1f} s wall ({big['pairs_per_s']:.1f} pairs/s), "
              f"{big['cpu_s']:.1f} CPU s, {big['mb']:.0f} MB - {verdict} the 60 s goal")
    if args.json:
        Path(args.json).write_text(json.dumps({"workers": workers, "image_size": settings.image_size,
                                               "load_average": load[0], "domains": rows, "clevr_big": big},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
