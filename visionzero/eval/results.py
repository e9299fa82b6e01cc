"""Evaluation results on disk: one flat JSON per evaluation (a DVC metrics file) and a
per-iteration curve (JSON Lines) to plot how the metrics move during training.

Metrics are a flat `{name: number}` dict, ready for `mlflow.log_metrics`. Files are
written atomically with sorted keys, so the same results give the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from visionzero.fileio import write_text_atomic


def _check(metrics: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {key!r} must be a finite number, got {value!r}")
        out[str(key)] = float(value)
    return out


def write_results(path: str | Path, metrics: Mapping[str, float]) -> Path:
    """Write the metrics as one JSON object (sorted keys, 2-space indent)."""
    return write_text_atomic(Path(path), json.dumps(_check(metrics), sort_keys=True, indent=2) + "\n")


def read_results(path: str | Path) -> dict[str, float]:
    """The metrics written by `write_results`."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an evaluation result (expected a JSON object)")
    return data


def append_curve(path: str | Path, iteration: int, metrics: Mapping[str, float]) -> Path:
    """Add one iteration's results to the curve file; an earlier row of that iteration is replaced
    (a resumed run re-evaluates an iteration without duplicating it). Rows stay sorted."""
    path = Path(path)
    rows = [r for r in read_curve(path) if r["iteration"] != iteration] if path.exists() else []
    rows.append({"iteration": int(iteration), **_check(metrics)})
    rows.sort(key=lambda r: r["iteration"])
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    return write_text_atomic(path, text)


def read_curve(path: str | Path) -> list[dict[str, float]]:
    """All rows of a curve file, sorted by iteration; [] when the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                int(row["iteration"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{lineno}: not a curve row") from None
            rows.append(row)
    return sorted(rows, key=lambda r: r["iteration"])


def curve_series(rows: list[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of one metric, skipping rows that lack it: ready to plot."""
    pairs = [(int(r["iteration"]), float(r[key])) for r in rows if key in r]
    return [i for i, _ in pairs], [v for _, v in pairs]
