"""Registry tasks: register the final checkpoint as an MLflow model (alias challenger) and
run the promotion gate; the decision is also a Prefect artifact of the flow run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tasks.artifacts import promotion_decision
from tasks.retry import transient_only
from tasks.session import settings_of
from visionzero.fileio import write_text_atomic
from visionzero.tracking.mlflow_run import mlflow_client
from visionzero.tracking.registry import promotion_gate, register_checkpoint


def _client(params: str, overrides: Sequence[str]):
    """The registry needs the server: a dead one fails the task fast (then Prefect retries)."""
    return mlflow_client(settings_of(params, overrides).tracking.uri)


@task(name="register-model", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
def register_model(
    params: str, overrides: Sequence[str], checkpoint: str, run_id: str | None, results: str,
    identity: dict[str, str] | None = None, datasets: list[dict[str, str]] | None = None,
) -> str:
    """Log `checkpoint` as an MLflow model with its evaluation metrics and what they were
    measured on; a new version is aliased challenger, an already registered one is reused."""
    s = settings_of(params, overrides)
    metrics = json.loads(Path(results).read_text())
    reg = register_checkpoint(_client(params, overrides), s, checkpoint, run_id, metrics, identity, datasets=datasets)
    get_run_logger().info("%s %s version %s (weights %s)", "registered" if reg.created else "already registered:",
                          s.registry.model_name, reg.version, reg.digest[:19])  # fmt: skip
    return reg.version


@task(name="promote-model", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
def promote_model(params: str, overrides: Sequence[str], version: str, decision_path: str) -> dict:
    """Move champion to `version` if it beats the champion by the margin on the same
    evaluation; write the decision JSON and the `vision-zero-promotion` Prefect artifact."""
    s = settings_of(params, overrides)
    decision = promotion_gate(_client(params, overrides), s.registry, version).as_dict()
    path = Path(decision_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(decision, indent=2, sort_keys=True))
    promotion_decision(decision)
    get_run_logger().info("promotion: %s", decision["reason"])
    return decision
