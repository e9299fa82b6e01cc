"""Shared set-up for benchmarks: settings, the tiny model, plain image pairs."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def machine() -> str:
    import torch

    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def report(name: str, rows: dict, out: str | None) -> None:
    """Print a result table and, with --json PATH, save it."""
    print(f"\n{name} ({machine()})")
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"benchmark": name, "machine": machine(), **rows}, indent=2))
