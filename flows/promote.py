"""Promotion flow: register the newest checkpoint (alias challenger), then the gate.

The champion alias moves to the challenger only if the evaluation metric named in
registry.metric beats the current champion by more than registry.margin; the decision and
its reason are tagged on the model version and written to runs/register/decision.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from tasks import layout
from tasks.registry import promote_model, register_model
from tasks.session import settings_of
from visionzero.train.checkpoint import latest_checkpoint


@flow(name="vision-zero-promote")
def promote_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    overrides = list(overrides or [])
    s = settings_of(params, overrides)
    checkpoint = latest_checkpoint(Path(layout.train_dir(s)) / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {layout.train_dir(s)}/checkpoints: run the training first")
    run_file = Path(layout.train_dir(s)) / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    results = f"{layout.eval_dir(s)}/results.json"
    version = register_model(params, overrides, str(checkpoint / "model"), run_id, results)
    decision = promote_model(params, overrides, version, f"{layout.register_dir(s)}/decision.json")
    return {"version": version, **decision}


if __name__ == "__main__":
    from flows.cli import run

    run(promote_flow, __doc__, lambda d: print(f"{d['model_name']} version {d['version']}: "
                                             f"{'promoted' if d['promoted'] else 'not promoted'} ({d['reason']})"))
