"""Registry tasks: register the final checkpoint as an MLflow model (alias challenger) and
run the promotion gate; the decision is also a Prefect artifact of the flow run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.session import settings_of
from visionzero.tracking.mlflow_run import mlflow_client
from visionzero.tracking.registry import promotion_gate, register_checkpoint


def _client(params: str, overrides: Sequence[str]):
    """The registry needs the server: a dead one fails the task fast (then Prefect retries)."""
    return mlflow_client(settings_of(params, overrides).tracking.uri)


@task(name="register-model", retries=2, retry_delay_seconds=[2, 10])
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


def _markdown(d: dict) -> str:
    rows = [("decision", "promoted" if d["promoted"] else "not promoted"), ("reason", d["reason"]),
            ("challenger", f"v{d['challenger_version']}: {d['metric']} = {d['challenger_value']}"),
            ("champion", f"v{d['champion_version']}: {d['champion_value']}" if d["champion_version"] else "none"),
            ("margin", d["margin"]), *((f"eval.{k}", v) for k, v in sorted(d["evaluation"].items()))]  # fmt: skip
    body = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows)
    return f"# Promotion of {d['model_name']} v{d['challenger_version']}\n\n| | |\n|---|---|\n{body}\n"


@task(name="promote-model", retries=2, retry_delay_seconds=[2, 10])
def promote_model(params: str, overrides: Sequence[str], version: str, decision_path: str) -> dict:
    """Move champion to `version` if it beats the champion by the margin on the same
    evaluation; write the decision JSON and a `promotion-decision` Prefect artifact."""
    s = settings_of(params, overrides)
    decision = promotion_gate(_client(params, overrides), s.registry, version).as_dict()
    path = Path(decision_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(decision, indent=2, sort_keys=True))
    create_markdown_artifact(key="promotion-decision", markdown=_markdown(decision), description=decision["reason"])
    get_run_logger().info("promotion: %s", decision["reason"])
    return decision
