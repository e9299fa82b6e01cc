"""Evaluation flow: the newest checkpoint of the training run against the frozen base.

Writes runs/eval/results.json (DVC metrics; the promotion gate's metric is in it) and
runs/eval/curve.csv (a DVC plot: the evaluations made during training, then this one), logs
the results on the training's MLflow run and a table of them as a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, tags

from tasks import layout
from tasks.evaluate import evaluate_checkpoint
from tasks.session import settings_of
from tasks.tracking import log_artifacts, log_metrics
from visionzero.train.checkpoint import latest_checkpoint


@flow(name="vision-zero-evaluate")
def evaluate_flow(params: str = "params.yaml", overrides: list[str] | None = None, model: str | None = None) -> dict:
    """Evaluate `model` (default: the newest training checkpoint) and return the metrics.

    Args:
        params: Settings file (params.yaml), the source of truth.
        overrides: Any setting as section.key=value, e.g. eval.games=50 (as --set).
        model: Model spec to evaluate: a checkpoint or model folder, 'tiny' or a hub id (empty:
            the newest training checkpoint).
    """
    overrides = list(overrides or [])
    s = settings_of(params, overrides)
    run_dir = layout.train_dir(s)
    step, history = 0, None
    prefix = "final_eval/"  # another model's evaluation is not part of the training's curves
    if model is None:
        checkpoint = latest_checkpoint(Path(run_dir) / "checkpoints")
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir}/checkpoints: run the training first")
        model, step = str(checkpoint / "model"), int(checkpoint.name.split("-")[1])
        history = f"{run_dir}/eval/curve.jsonl"  # the training's own evaluations come first
        prefix = "eval/"  # the last point of the training's eval/* series (one win_rate curve)
    with tags(*layout.domain_tags(s)):
        results = evaluate_checkpoint(params, overrides, model, layout.eval_dir(s), step, history=history)
    log_metrics(params, overrides, run_dir, {f"{prefix}{k}": v for k, v in results.items()}, step)
    out = layout.eval_dir(s)
    log_artifacts(params, overrides, run_dir, [f"{out}/results.json", f"{out}/curve.csv"], "eval")
    return {"model": model, **results}


if __name__ == "__main__":
    from flows.cli import run

    run(evaluate_flow, __doc__, lambda out: print({k: out[k] for k in list(out)[:8]}))
