"""Promotion flow: register the newest checkpoint as an MLflow model (alias challenger), then the gate.

The champion alias moves to the challenger only if both were evaluated on the same set, by
the same rules, against the same opponent (runs/eval/identity.json, recorded on the version)
and the metric named in registry.metric beats the champion's by more than registry.margin.
The decision and its reason are tagged on the model version, written to
runs/register/decision.json and shown as the flow run's `vision-zero-promotion` artifact.
Re-running it on a checkpoint already registered adds no version.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from tasks import layout
from tasks.registry import promote_model, register_model
from tasks.session import settings_of
from visionzero.eval.identity import read_identity
from visionzero.models.digest import file_sha256
from visionzero.train.checkpoint import latest_checkpoint


def _datasets(s, identity: dict[str, str] | None) -> list[dict[str, str]]:
    """The pair folders the model was trained and evaluated on, named by their manifests' digests."""
    out = []
    for domain, folder in zip(s.pairs.domains, layout.pairs_dirs(s)):
        manifest = Path(folder) / "manifest.jsonl"
        if manifest.is_file():
            digest = file_sha256(manifest)[:16]
            out.append({"name": f"pairs-{domain}", "path": folder, "digest": digest, "context": "training"})
            if identity:  # the held-out split of the same folders, as the eval set's fingerprint names it
                out.append({"name": f"eval-{domain}", "path": folder, "digest": identity["eval_set"], "context": "evaluation"})
    return out


@flow(name="vision-zero-promote")
def promote_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    overrides = list(overrides or [])
    s = settings_of(params, overrides)
    checkpoint = latest_checkpoint(Path(layout.train_dir(s)) / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {layout.train_dir(s)}/checkpoints: run the training first")
    run_file = Path(layout.train_dir(s)) / "mlflow_run.json"
    saved = json.loads(run_file.read_text()) if run_file.exists() else {}
    run_id = saved.get("run_id") if saved.get("uri") == s.tracking.uri else None  # a run of this tracking server only
    results = f"{layout.eval_dir(s)}/results.json"
    identity = read_identity(layout.eval_dir(s))
    version = register_model(params, overrides, str(checkpoint / "model"), run_id, results, identity, _datasets(s, identity))
    decision = promote_model(params, overrides, version, f"{layout.register_dir(s)}/decision.json")
    return {"version": version, **decision}


if __name__ == "__main__":
    from flows.cli import run

    run(promote_flow, __doc__, lambda d: print(f"{d['model_name']} version {d['version']}: "
                                             f"{'promoted' if d['promoted'] else 'not promoted'} ({d['reason']})"))
