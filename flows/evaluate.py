"""Evaluation flow: the newest checkpoint of the training run against the frozen base.

Writes runs/eval/results.json (DVC metrics; the promotion gate's metric is in it) and logs
the results on the training's MLflow run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks import layout
from tasks.evaluate import evaluate_checkpoint
from tasks.session import settings_of
from tasks.tracking import log_artifacts, log_metrics
from visionzero.train.checkpoint import latest_checkpoint


@flow(name="vision-zero-evaluate")
def evaluate_flow(params: str = "params.yaml", overrides: list[str] | None = None, model: str | None = None) -> dict:
    """Evaluate `model` (default: the newest training checkpoint) and return the metrics."""
    overrides = list(overrides or [])
    s = settings_of(params, overrides)
    run_dir = layout.train_dir(s)
    step, prefix = 0, "final_eval/"  # another model's evaluation is not part of the training's curves
    if model is None:
        checkpoint = latest_checkpoint(Path(run_dir) / "checkpoints")
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir}/checkpoints: run the training first")
        model, step = str(checkpoint / "model"), int(checkpoint.name.split("-")[1])
        prefix = "eval/"  # the last point of the training's eval/* series (one win_rate curve)
    results = evaluate_checkpoint(params, overrides, model, layout.eval_dir(s), step)
    log_metrics(params, overrides, run_dir, {f"{prefix}{k}": v for k, v in results.items()}, step)
    log_artifacts(params, overrides, run_dir, [f"{layout.eval_dir(s)}/results.json"], "eval")
    return {"model": model, **results}


if __name__ == "__main__":
    from flows.cli import run

    run(evaluate_flow, __doc__, lambda out: print({k: out[k] for k in list(out)[:8]}))
