"""evaluate: held-out games, the match against the frozen base, verifiable VQA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tasks import layout
from tasks.session import settings_of
from visionzero.eval.results import append_curve, read_curve, write_results
from visionzero.eval.runner import evaluate
from visionzero.train.report import write_rows_csv


@task(name="evaluate")
def evaluate_checkpoint(params: str, overrides: Sequence[str], model: str, out_dir: str, iteration: int) -> dict:
    """Evaluate model spec `model`; write results.json and add a row to the curve (curve.jsonl/.csv)."""
    s = settings_of(params, overrides)
    report = evaluate(s, layout.pairs_dirs(s), model=model)
    out = Path(out_dir)
    write_results(out / "results.json", report.metrics)
    curve = append_curve(out / "curve.jsonl", iteration, report.metrics)
    write_rows_csv(read_curve(curve), out / "curve.csv")
    get_run_logger().info(
        "iteration %d: %s=%.3f (%.0f s)", iteration, s.registry.metric, report.metrics.get(s.registry.metric, float("nan")),
        report.seconds.get("total", 0.0),
    )
    return report.metrics
