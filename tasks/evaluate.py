"""evaluate: held-out games, the match against the frozen base, verifiable VQA."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tasks import layout
from tasks.artifacts import evaluation_table
from tasks.session import settings_of, warm_players
from visionzero.eval.identity import eval_identity, write_identity
from visionzero.eval.results import append_curve, read_curve, write_results
from visionzero.eval.runner import evaluate
from visionzero.train.report import write_rows_csv

HEADLINE = ("win_rate", "game/vote_accuracy", "vqa/accuracy")  # the log line; every metric is in the table


@task(name="evaluate", task_run_name="evaluate-it{iteration}")
def evaluate_checkpoint(
    params: str, overrides: Sequence[str], model: str, out_dir: str, iteration: int, run_dir: str | None = None,
    history: str | None = None,
) -> dict:
    """Evaluate model spec `model`; write results.json (+ identity.json) and add a row to the curve (curve.jsonl/.csv).

    With `run_dir` (evaluation during training) the run's policy and starting model are used
    from memory when they are warm in this process: `model` is then the checkpoint of that
    exact policy, and nothing is loaded twice. With `history` (a curve.jsonl of the
    evaluations made during training) the curve starts from its rows, so the final
    evaluation's curve shows the whole run.
    """
    s = settings_of(params, overrides)
    in_memory = warm_players(params, overrides, run_dir) if run_dir else (None, None)
    report = evaluate(s, layout.pairs_dirs(s), model=model, in_memory=in_memory)
    out = Path(out_dir)
    write_results(out / "results.json", report.metrics)
    write_identity(out, eval_identity(report, s))  # what the gate must compare: set, rules, opponent
    curve = out / "curve.jsonl"
    if history is not None:  # started afresh: rows of an older training must not linger
        curve.unlink(missing_ok=True)
        if Path(history).exists():
            shutil.copyfile(history, curve)
    append_curve(curve, iteration, report.metrics)
    write_rows_csv(read_curve(curve), out / "curve.csv")
    evaluation_table(report.metrics, iteration, model)
    shown = ", ".join(f"{k}={report.metrics[k]:.3f}" for k in HEADLINE if k in report.metrics)
    get_run_logger().info("iteration %d: %s (%.0f s)", iteration, shown, report.seconds.get("total", 0.0))
    return report.metrics
