"""Prefect artifacts: what a run produced, on its page in the Prefect UI.

- `vision-zero-evaluation`: a table per evaluation (every metric, the iteration, the model);
- `vision-zero-mlflow-run`: a link to the training's MLflow run (http(s) tracking URIs), or
  how to browse it (a local store);
- `vision-zero-promotion`: the promotion gate's decision.

An artifact is a view of results that are already on disk and in MLflow: failing to create
one logs a warning and never fails the task that made the results.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("vision-zero.artifacts")

EVALUATION_KEY = "vision-zero-evaluation"
MLFLOW_KEY = "vision-zero-mlflow-run"
PROMOTION_KEY = "vision-zero-promotion"


def _safely(what: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - a view must not break the pipeline
        from visionzero.errors import first_line

        log.warning("Prefect artifact %s not created: %s", what, first_line(exc))
        return None


def _cell(value: Any) -> Any:
    """Table cells Prefect can serialise (NaN and inf are not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return round(value, 6) if isinstance(value, float) else value


def evaluation_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"metric": name, "value": _cell(metrics[name])} for name in sorted(metrics)]


def evaluation_table(metrics: Mapping[str, Any], iteration: int, model: str) -> Any:
    """One table artifact per evaluation: every metric of results.json."""
    from prefect.artifacts import create_table_artifact

    return _safely(EVALUATION_KEY, lambda: create_table_artifact(
        evaluation_rows(metrics), key=EVALUATION_KEY,
        description=f"Evaluation at iteration {iteration} of `{model}` (results.json)",
    ))  # fmt: skip


def public_uri(uri: str) -> str:
    """The tracking URI without credentials (user:password@ never reaches the Prefect UI)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mlflow_run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI page of a run when the tracking URI is a server; None for a local store."""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{public_uri(uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_run_link(uri: str, experiment_id: str | None, run_id: str | None) -> Any:
    """Link artifact to the run (server URIs); for a local store, how to open it."""
    if not run_id or not experiment_id:
        return None
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    url = mlflow_run_url(uri, experiment_id, run_id)
    if url:
        return _safely(MLFLOW_KEY, lambda: create_link_artifact(
            url, link_text=f"MLflow run {run_id}", key=MLFLOW_KEY, description="The training's MLflow run",
        ))  # fmt: skip
    text = (f"MLflow run `{run_id}` (experiment {experiment_id}) in `{public_uri(uri)}`.\n\n"
            f"Browse it with `mlflow ui --backend-store-uri {public_uri(uri)}`.")  # fmt: skip
    return _safely(MLFLOW_KEY, lambda: create_markdown_artifact(text, key=MLFLOW_KEY, description="The training's MLflow run"))


def promotion_markdown(decision: Mapping[str, Any]) -> str:
    verdict = "promoted to champion" if decision.get("promoted") else "not promoted"
    head = f"**{decision.get('model_name', 'model')} version {decision.get('challenger_version', decision.get('version', '?'))}: {verdict}**"
    rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in sorted(decision.items()))
    return f"{head}\n\n{decision.get('reason', '')}\n\n| field | value |\n|---|---|\n{rows}\n"


def promotion_decision(decision: Mapping[str, Any]) -> Any:
    """The promotion gate's decision and its reason."""
    from prefect.artifacts import create_markdown_artifact

    return _safely(PROMOTION_KEY, lambda: create_markdown_artifact(
        promotion_markdown(decision), key=PROMOTION_KEY, description="Promotion gate decision",
    ))  # fmt: skip
