"""Generate a dataset of image pairs in parallel: images/, manifest.jsonl.

Reproducibility: pair i of a split draws everything from its own seed,
`pair_seed(seed, domain, split, i)`, so the output does not depend on the number of
workers or the order they finish in, growing `n` only appends pairs, and the eval pairs
(their own seed stream) stay the same whatever the number of training pairs. Photo sources
are divided between the splits first, so an eval pair never shows a photo seen in training
(when there are at least two photos).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from visionzero.pairs.imageio import save_png
from visionzero.pairs.manifest import (
    MANIFEST_NAME,
    ManifestError,
    PairRecord,
    read_manifest,
    write_manifest,
)
from visionzero.pairs.sources import SourceItem, SourceScan, scan_source
from visionzero.settings.schema import PairsSettings

DOMAINS = ("clevr", "chart", "photo")
_DOMAIN_CODE = {"clevr": 1, "chart": 2, "photo": 3}
_SPLIT_CODE = {"train": 0, "eval": 1}
_SOURCE_SPLIT_STREAM = 2  # seed stream that divides photo sources between the splits
IMAGES_DIR = "images"
# Written before the first image and removed with the manifest's arrival: a folder holding
# it is a run of ours that stopped half-way, and the next run may clear it.
INCOMPLETE = ".incomplete"


class OutputError(ValueError):
    """The output folder cannot be used; one line for a human."""


class WorkerLost(RuntimeError):
    """A pair worker died or stopped answering; one line naming the pairs it held."""


@dataclass(frozen=True)
class Job:
    id: str
    domain: str
    split: str
    seed: int
    item: SourceItem | None = None


@dataclass
class GenerateReport:
    out_dir: Path
    records: list[PairRecord]
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)  # bad source files: (file, reason)
    notes: list[str] = field(default_factory=list)  # things the user should know (fewer pairs, shared photos)
    skipped_line: str | None = None  # the one-line summary of `skipped`

    @property
    def n_train(self) -> int:
        return sum(r.split == "train" for r in self.records)

    @property
    def n_eval(self) -> int:
        return sum(r.split == "eval" for r in self.records)


def pair_seed(seed: int, domain: str, split: str, index: int) -> int:
    """The seed of one pair: a hash of (master seed, domain, split, index)."""
    seq = np.random.SeedSequence([seed, _DOMAIN_CODE[domain], _SPLIT_CODE[split], index])
    return int(seq.generate_state(1)[0])


def make_pair(domain: str, settings: PairsSettings, seed: int, item: SourceItem | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One pair from its seed: (original RGB, edited RGB, manifest fields). Pure and deterministic."""
    rng = np.random.default_rng(seed)
    size = settings.image_size
    if domain == "clevr":
        from visionzero.pairs.clevr import make_clevr_pair

        return make_clevr_pair(rng, settings.clevr, size)
    if domain == "chart":
        from visionzero.pairs.charts import make_chart_pair

        return make_chart_pair(rng, settings.chart, size)
    if domain == "photo":
        from visionzero.pairs.photos import make_photo_pair

        if item is None:
            raise ValueError("photo pairs need a source item")
        return make_photo_pair(rng, settings.photo, size, item)
    raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")


# ----------------------------------------------------------------------------- planning
def default_n_eval(settings: PairsSettings, n: int) -> int:
    """Eval pairs out of n, in the settings' train:eval proportion (n_train + n_eval gives n_eval)."""
    return int(round(n * settings.n_eval / (settings.n_train + settings.n_eval)))


def _shuffled(items: list[SourceItem], seed: int) -> list[SourceItem]:
    """Sources in a seeded order (its own seed stream); the first ones go to eval."""
    order = np.random.default_rng([seed, _DOMAIN_CODE["photo"], _SOURCE_SPLIT_STREAM]).permutation(len(items))
    return [items[i] for i in order]


def plan_jobs(domain: str, n: int, n_eval: int, seed: int, scan: SourceScan | None) -> tuple[list[Job], list[str]]:
    """The pairs to make: ids, splits, seeds and (photos) their source. Returns (jobs, notes)."""
    n_train = n - n_eval
    notes: list[str] = []
    sources: dict[str, list[SourceItem | None]] = {"train": [None], "eval": [None]}
    counts = {"train": n_train, "eval": n_eval}
    if scan is not None and scan.mode == "pairs":  # each ready pair is used once, in one split
        shuffled = _shuffled(scan.items, seed)
        k_eval = min(n_eval, len(shuffled) - (1 if n_train > 0 and len(shuffled) > 1 else 0))
        sources = {"eval": shuffled[:k_eval], "train": shuffled[k_eval:k_eval + n_train]}
        counts = {s: len(v) for s, v in sources.items()}
        if counts["train"] + counts["eval"] < n:
            notes.append(f"only {len(shuffled)} ready pair(s) in the source: made {counts['train']} train + {counts['eval']} eval")
    elif scan is not None:  # photos to crop and edit: the eval split gets its own photos
        if len(scan.items) >= 2 and n_eval > 0 and n_train > 0:
            shuffled = _shuffled(scan.items, seed)
            k = min(len(shuffled) - 1, max(1, round(len(shuffled) * n_eval / n)))
            sources = {"train": shuffled[k:], "eval": shuffled[:k]}
        else:
            sources = {"train": list(scan.items), "eval": list(scan.items)}
            if n_eval > 0 and n_train > 0:
                notes.append("one source photo: train and eval pairs are crops of the same photo")
    jobs = []
    for split in ("train", "eval"):
        pool = sources[split]
        for i in range(counts[split]):
            item = pool[i] if scan is not None and scan.mode == "pairs" else pool[i % len(pool)]
            jobs.append(Job(f"{domain}-{split}-{i:05d}", domain, split, pair_seed(seed, domain, split, i), item))
    return jobs, notes


# ----------------------------------------------------------------------------- running
@lru_cache(maxsize=2)
def _settings(settings_json: str) -> PairsSettings:
    return PairsSettings.model_validate_json(settings_json)


def _run_job(job: Job, settings_json: str, out_dir: str) -> dict[str, Any]:
    """Make one pair, write its two PNGs, return its manifest record (as a dict)."""
    settings = _settings(settings_json)
    original, edited, fields = make_pair(job.domain, settings, job.seed, job.item)
    rel_a, rel_b = f"{IMAGES_DIR}/{job.id}_original.png", f"{IMAGES_DIR}/{job.id}_modified.png"
    save_png(original, Path(out_dir) / rel_a)
    save_png(edited, Path(out_dir) / rel_b)
    return {"id": job.id, "domain": job.domain, "split": job.split, "original": rel_a, "edited": rel_b,
            "seed": job.seed, **fields}


def _prepare_out(out_dir: Path) -> None:
    """Create the folder; clear what an earlier run wrote there; refuse a folder of other files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    manifest = out_dir / MANIFEST_NAME
    if (out_dir / INCOMPLETE).exists():  # our own half-made run: only our images go
        for path in (out_dir / IMAGES_DIR).glob("*.png"):
            path.unlink()
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not manifest.exists():
        raise OutputError(f"{out_dir}: folder is not empty and holds no {MANIFEST_NAME}; choose a new or empty folder")
    if manifest.exists():
        try:
            old = read_manifest(out_dir)
        except ManifestError as exc:
            raise OutputError(f"{out_dir}: cannot replace the earlier dataset ({exc})") from None
        for record in old:
            for rel in (record.original, record.edited):
                path = (out_dir / rel).resolve()
                if path.parent == (out_dir / IMAGES_DIR).resolve():  # only our own files
                    path.unlink(missing_ok=True)
        manifest.unlink()
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / INCOMPLETE).write_text("vision-zero pairs: generation in progress or interrupted\n")


def _context() -> mp.context.BaseContext:
    """fork when this process has one thread (fast, needs no __main__ guard); spawn otherwise,
    since forking a process with threads (Prefect, MLflow) can deadlock the child."""
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _in_processes(run: Callable[[Job], dict], jobs: list[Job], n_workers: int, timeout: float):
    """Yield run(job) for every job from `n_workers` processes, a few jobs in flight per
    worker. A worker killed (the OOM killer) or silent for `timeout` s raises WorkerLost
    naming the pairs in flight, instead of the wait that never ends in multiprocessing.Pool."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = iter(jobs)
    with ProcessPoolExecutor(n_workers, mp_context=_context()) as pool:
        flight = {}
        try:
            for job in pending:
                flight[pool.submit(run, job)] = job.id
                if len(flight) >= 2 * n_workers:
                    break
            while flight:
                done, _ = wait(flight, timeout=timeout, return_when=FIRST_COMPLETED)
                if not done:
                    raise WorkerLost(f"pairs: no pair finished within {timeout:.0f} s (pairs.job_timeout); "
                                     f"in flight: {', '.join(sorted(flight.values()))}")  # fmt: skip
                for future in done:
                    flight.pop(future)
                    yield future.result()
                    job = next(pending, None)
                    if job is not None:
                        flight[pool.submit(run, job)] = job.id
        except BrokenProcessPool:
            raise WorkerLost(f"pairs: a worker process died (killed, or out of memory) while making one of "
                             f"{', '.join(sorted(flight.values()))}; nothing was published") from None  # fmt: skip
        finally:
            if flight:  # do not wait for the rest of a failed run
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
                pool.shutdown(wait=False, cancel_futures=True)


def resolve_workers(workers: int | None, settings: PairsSettings, n_jobs: int) -> int:
    w = settings.workers if workers is None else workers
    w = w or os.cpu_count() or 1
    return max(1, min(w, n_jobs))


def generate_pairs(
    settings: PairsSettings,
    domain: str,
    n: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_eval: int | None = None,
    source: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> GenerateReport:
    """Make `n` pairs of `domain` in `out_dir`: images/<id>_original.png, _modified.png, manifest.jsonl.

    n_eval: how many of the n are held-out eval pairs (default: the settings' proportion).
    source: photo folder (images or ready pairs); default settings.photo.source, then
    scikit-image's photos. workers: processes (default settings.workers; 0 = one per core;
    1 = in this process). progress: called with 1 after each finished pair.
    """
    start = time.perf_counter()
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    if n < 1:
        raise ValueError(f"n must be at least 1 (got {n})")
    n_eval = default_n_eval(settings, n) if n_eval is None else n_eval
    if not 0 <= n_eval <= n:
        raise ValueError(f"n_eval must be between 0 and n={n} (got {n_eval})")
    scan = None
    if domain == "photo":
        photo = settings.photo
        scan = scan_source(source if source is not None else photo.source, photo.min_size, photo.max_pixels)
    jobs, notes = plan_jobs(domain, n, n_eval, seed, scan)
    if domain == "clevr":  # settings that cannot work fail here, in one line, before any file is touched
        from visionzero.pairs.clevr import sample_scene

        sample_scene(np.random.default_rng(seed), settings.clevr, settings.image_size, settings.clevr.object_scale)
    out = Path(out_dir)
    _prepare_out(out)

    run = partial(_run_job, settings_json=settings.model_dump_json(), out_dir=str(out))
    n_workers = resolve_workers(workers, settings, len(jobs))
    results: list[dict[str, Any]] = []
    if n_workers == 1:
        for job in jobs:
            results.append(run(job))
            if progress:
                progress(1)
    else:
        for rec in _in_processes(run, jobs, n_workers, settings.job_timeout):
            results.append(rec)
            if progress:
                progress(1)
    order = {job.id: k for k, job in enumerate(jobs)}
    records = [PairRecord.from_dict(r) for r in sorted(results, key=lambda r: order[r["id"]])]
    write_manifest(out, records)
    (out / INCOMPLETE).unlink(missing_ok=True)
    return GenerateReport(
        out_dir=out, records=records, seconds=time.perf_counter() - start,
        skipped=list(scan.skipped) if scan else [], notes=notes,
        skipped_line=scan.summary() if scan else None,
    )
