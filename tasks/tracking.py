"""MLflow tasks: start/resume the run, log metrics and artifacts (retried: they talk to a server)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task

from tasks import layout
from tasks.artifacts import mlflow_run_link
from tasks.retry import transient_only
from tasks.session import settings_of
from visionzero.envinfo import env_tags
from visionzero.tracking.mlflow_run import RunTracker
from visionzero.tracking.provenance import pair_datasets

_TRACKERS: dict[str, RunTracker] = {}


def tracker(params: str, overrides: Sequence[str], run_dir: str) -> RunTracker:
    key = str(Path(run_dir).resolve())
    if key not in _TRACKERS:  # a new process, or training has ended: log to the folder's run
        _TRACKERS[key] = RunTracker(settings_of(params, overrides).tracking, run_dir)
        _TRACKERS[key].attach()
    return _TRACKERS[key]


def deployment_launch() -> str | None:
    """The top flow run when a deployment launched this one: each deployment run is its own
    training in MLflow (a plain script run or `dvc repro` is not)."""
    try:
        from prefect.runtime import deployment, flow_run

        return str(flow_run.root_flow_run_id) if deployment.id else None
    except Exception:  # noqa: BLE001 - outside a flow run, or the API cannot say
        return None


@task(name="start-mlflow-run", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
def start_run(params: str, overrides: Sequence[str], run_dir: str, run_name: str) -> str | None:
    """Create (or continue) the training run; params = flattened settings, tags = provenance."""
    settings = settings_of(params, overrides)
    # the environment: the lock file's hash and whether this venv drifted from it
    tags = {**env_tags(), "run_dir": str(Path(run_dir).resolve()), "model.spec": settings.model.spec}
    run = tracker(params, overrides, run_dir)
    run_id = run.start(run_name, settings, tags, datasets=pair_datasets(layout.pairs_dirs(settings)), launch=deployment_launch())
    mlflow_run_link(settings.tracking.uri, run.experiment_id, run_id)
    return run_id


@task(name="log-metrics", task_run_name="log-metrics-it{step}", retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=transient_only)  # fmt: skip
def log_metrics(params: str, overrides: Sequence[str], run_dir: str, metrics: dict, step: int) -> None:
    tracker(params, overrides, run_dir).log_metrics(metrics, step)


@task(name="log-artifacts", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=transient_only)
def log_artifacts(params: str, overrides: Sequence[str], run_dir: str, paths: list[str], artifact_path: str | None = None) -> None:
    tracker(params, overrides, run_dir).log_artifacts(paths, artifact_path)


def end_run(params: str, overrides: Sequence[str], run_dir: str, status: str = "FINISHED") -> str | None:
    t = _TRACKERS.pop(str(Path(run_dir).resolve()), None) or tracker(params, overrides, run_dir)
    t.end(status)
    return t.run_id
