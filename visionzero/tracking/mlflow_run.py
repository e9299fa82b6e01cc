"""MLflow logging for a training run that never stops the training.

Choice: ONE MLflow run per training run, metrics logged by step (= Iterative-SPO
iteration) on it. The MLflow UI then draws every curve over iterations in one place, and
comparing runs (a `dvc exp run -S` sweep) compares single rows; 100 nested runs per
training would bury those curves. Evaluation results go on the same run at their step.

Failure policy: if the tracking server is unreachable or a call fails, one warning line
is printed, tracking is switched off for the rest of the run, and training goes on;
everything stays in the run folder (metrics.jsonl, eval results) and can be logged later.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from visionzero.errors import first_line
from visionzero.settings import Settings, flatten, settings_dict
from visionzero.settings.schema import TrackingSettings

log = logging.getLogger("visionzero.tracking")
RUN_FILE = "mlflow_run.json"


def _reachable(uri: str) -> str | None:
    """None if the tracking URI can be used, else the reason in a few words."""
    if not uri.startswith(("http://", "https://")):
        return None
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3) as response:
            return None if response.status == 200 else f"health check answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


class TrackingUnavailable(RuntimeError):
    """The MLflow server cannot be reached (raised where tracking is required: the registry)."""


def _fail_fast() -> None:
    """A dead server must not hang a call in MLflow's HTTP retries (default: 7, with backoff)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _new_client(uri: str):
    from mlflow import MlflowClient

    _fail_fast()
    return MlflowClient(tracking_uri=uri)


def mlflow_client(uri: str):
    """An MlflowClient for `uri` that fails fast: TrackingUnavailable if the server is down."""
    if reason := _reachable(uri):
        raise TrackingUnavailable(f"MLflow at {uri} is unreachable ({reason})")
    return _new_client(uri)


class RunTracker:
    """Start or resume the MLflow run of a training run folder and log to it."""

    def __init__(self, settings: TrackingSettings, run_dir: str | Path):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.enabled = settings.enabled
        self._client = None
        self._checked = False

    # --------------------------------------------------------------- failure policy
    def _disable(self, what: str, exc: BaseException | str) -> None:
        first = first_line(exc)
        log.warning("MLflow %s failed at %s (%s); tracking is off for this run, results stay in %s",
                    what, self.settings.uri, first, self.run_dir)
        self.enabled = False

    def _call(self, what: str, fn, *args, **kwargs) -> Any:
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never break training
            self._disable(what, exc)
            return None

    @property
    def client(self):
        if self._client is None:
            self._client = _new_client(self.settings.uri)
        return self._client

    def _check_server(self) -> bool:
        """Once per tracker: a dead server turns tracking off before any call can hang."""
        if self.enabled and not self._checked:
            self._checked = True
            if reason := _reachable(self.settings.uri):
                self._disable("connection", reason)
        return self.enabled

    # --------------------------------------------------------------- run lifecycle
    def attach(self) -> str | None:
        """Log to the run the folder already has (e.g. the final evaluation, after training
        ended, from another flow or process); None when it has none at this tracking URI."""
        saved = self.run_dir / RUN_FILE
        if self.run_id is None and self.enabled and saved.exists():
            data = json.loads(saved.read_text())
            if data.get("uri") == self.settings.uri and self._check_server():
                self.run_id, self.experiment_id = data["run_id"], data["experiment_id"]
        return self.run_id

    def start(self, run_name: str, settings: Settings, tags: dict[str, str]) -> str | None:
        """Resume the folder's run if it has one, else create it; log params and tags."""
        if not self._check_server():
            return None
        if self.attach() is not None:
            self._call("resume", self.client.update_run, self.run_id, status="RUNNING")
            return self.run_id if self.enabled else None
        exp = self._call("experiment", self.client.get_experiment_by_name, self.settings.experiment)
        if not self.enabled:
            return None
        self.experiment_id = exp.experiment_id if exp else self._call(
            "experiment", self.client.create_experiment, self.settings.experiment
        )
        run = self._call("start", self.client.create_run, self.experiment_id, run_name=run_name, tags=tags)
        if run is None:
            return None
        self.run_id = run.info.run_id
        self.log_params(flatten(settings_dict(settings)))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / RUN_FILE).write_text(
            json.dumps({"uri": self.settings.uri, "run_id": self.run_id, "experiment_id": self.experiment_id})
        )
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # the batch API takes at most 100 params
            self._call("log params", self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        """Numeric values only (booleans as 0/1); names keep their `group/name` form."""
        from mlflow.entities import Metric

        if not self.enabled or self.run_id is None:
            return
        import time

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        for i in range(0, len(items), 1000):
            self._call("log metrics", self.client.log_batch, self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.run_id is None:
            return
        for key, value in tags.items():
            self._call("set tag", self.client.set_tag, self.run_id, key, value)

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        if self.run_id is None:
            return
        for path in paths:
            if Path(path).exists():
                self._call("log artifact", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self._call("end", self.client.set_terminated, self.run_id, status)

    @property
    def run_url(self) -> str | None:
        if self.run_id is None:
            return None
        return f"{self.settings.uri} experiment {self.experiment_id} run {self.run_id}"
