"""Registry tasks: register the final checkpoint (alias challenger) and run the promotion gate."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tasks.session import settings_of
from visionzero.tracking.mlflow_run import mlflow_client
from visionzero.tracking.registry import promotion_gate, register_checkpoint


def _client(params: str, overrides: Sequence[str]):
    """The registry needs the server: a dead one fails the task fast (then Prefect retries)."""
    return mlflow_client(settings_of(params, overrides).tracking.uri)


@task(name="register-model", retries=2, retry_delay_seconds=[2, 10])
def register_model(params: str, overrides: Sequence[str], checkpoint: str, run_id: str | None, results: str) -> str:
    """Register `checkpoint` (a directory; no upload) with its evaluation metrics; alias challenger."""
    s = settings_of(params, overrides)
    metrics = json.loads(Path(results).read_text())
    version = register_checkpoint(_client(params, overrides), s.registry, checkpoint, run_id, metrics)
    get_run_logger().info("registered %s version %s (%s)", s.registry.model_name, version, s.registry.challenger_alias)
    return version


@task(name="promote-model", retries=2, retry_delay_seconds=[2, 10])
def promote_model(params: str, overrides: Sequence[str], version: str, decision_path: str) -> dict:
    """Move champion to `version` if it beats the champion by the margin; write the decision JSON."""
    s = settings_of(params, overrides)
    decision = promotion_gate(_client(params, overrides), s.registry, version).as_dict()
    path = Path(decision_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(decision, indent=2, sort_keys=True))
    get_run_logger().info("promotion: %s", decision["reason"])
    return decision
