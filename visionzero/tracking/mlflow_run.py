"""MLflow logging for a training run: one run per training, nothing lost, nothing doubled,
and never a reason for the training to stop.

One run per training (docs/architecture.md): metrics by step (= Iterative-SPO iteration),
evaluations at their iteration. Which run a training logs to is decided by its identity:
the fingerprint of the settings a resume may not change (settings/resume.py, the loop's
own rule), the DVC experiment (DVC_EXP_NAME) and the Prefect deployment run that launched
it. The same identity in the same run folder continues the run; any other starts a new
one, which receives the whole local record of the training.

Local first. What MLflow must receive is on disk before anything is sent:
  - `metrics.jsonl` (written by the loop): one row per iteration;
  - `mlflow_outbox.jsonl`: every other entry (params, datasets, evaluation metrics, tags,
    artifacts, status), appended and fsynced;
  - `mlflow_run.json`: the run (identity, ids) and how far each record was sent, rewritten
    atomically after every successful send.
`sync` sends what is pending in order. A metric keeps the timestamp it was given before its
first send, so a resend after a crash between the send and the bookkeeping is exactly the
same (key, timestamp, step, value), which MLflow's SQL store drops as a duplicate; every
step is thus stored once. A step already sent is never sent again (after a resume, a
recomputed iteration keeps its first values).

Failure policy: a call that fails (server down, timeout) leaves everything pending and
logs one warning per outage; the next call, the next process on this folder (resume, the
evaluate flow) or `end` sends the rest. Calls are bounded in time (connection.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from visionzero.errors import first_line
from visionzero.fileio import write_text_atomic
from visionzero.settings import Settings, flatten
from visionzero.settings.resume import training_fingerprint
from visionzero.settings.schema import TrackingSettings
from visionzero.settings.secrets import redact_text, redacted_dict
from visionzero.tracking.connection import (  # noqa: F401 - re-exported for tasks/registry.py
    TrackingUnavailable,
    mlflow_client,
    new_client,
    reachable,
    resolve_store_uri,
)

log = logging.getLogger("visionzero.tracking")
RUN_FILE = "mlflow_run.json"
OUTBOX = "mlflow_outbox.jsonl"
METRICS = "metrics.jsonl"  # train/loop.py's record of the iterations
RUN_KEY_TAG = "visionzero.run_key"  # finds a run whose creation answer was lost
STAGE_ID = {"decision": 0, "clue": 1}  # as curves.csv (train/report.py)
MAX_METRICS, MAX_PARAMS = 1000, 100  # per log_batch call


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """What MLflow can plot: finite numbers, booleans as 0/1, stages as STAGE_ID numbers."""
    out = {}
    for key, value in metrics.items():
        if key in ("stage", "next_stage") and value in STAGE_ID:
            out[f"{key}_id"] = float(STAGE_ID[value])
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a crash was never acknowledged
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class RunTracker:
    """Start, continue or attach to the MLflow run of a training run folder and log to it."""

    def __init__(self, settings: TrackingSettings, run_dir: str | Path):
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.uri = resolve_store_uri(settings.uri)  # may hold credentials: memory only
        self.shown_uri = redact_text(self.uri)  # what files and log lines say
        self.enabled = settings.enabled
        self.state: dict | None = None  # mlflow_run.json of the current run
        self._client = None
        self._checked = False  # the health check ran once
        self._down = False  # in an outage: warned once, retried at every call
        self._upto: int | None = None  # metrics.jsonl rows beyond this step may be a previous training's

    # ------------------------------------------------------------------ local state
    @property
    def run_id(self) -> str | None:
        return self.state.get("run_id") if self.state else None

    @property
    def experiment_id(self) -> str | None:
        return self.state.get("experiment_id") if self.state else None

    def _saved(self) -> dict | None:
        """The folder's run file when it names this store and experiment."""
        try:
            data = json.loads((self.run_dir / RUN_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("uri") != self.shown_uri or data.get("experiment", self.settings.experiment) != self.settings.experiment:
            return None
        if "key" not in data:  # a run file written before the outbox: its rows were sent as they came
            rows = [r.get("iteration") for r in _read_jsonl(self.run_dir / METRICS)]
            data.update(key=data.get("run_id") or uuid.uuid4().hex, sent_step=max([r for r in rows if isinstance(r, int)], default=0))
        defaults = {"run_name": "vision-zero", "tags": {}, "identity": None, "experiment": self.settings.experiment,
                    "sent": 0, "sent_step": 0, "stamps": {}}  # fmt: skip
        return {**defaults, **data}

    def _save(self) -> None:
        write_text_atomic(self.run_dir / RUN_FILE, json.dumps(self.state, indent=1, sort_keys=True))

    def _append(self, entry: dict) -> None:
        """Put an entry in the outbox (on disk before it is sent)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / OUTBOX
        with path.open("a+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # end a line torn by a crash: it stays unreadable, this entry does not
            fh.write((json.dumps({**entry, "run": self.state["key"]}, sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ failure policy
    @property
    def client(self):
        if self._client is None:
            self._client = new_client(self.uri)
        return self._client

    def _failed(self, what: str, exc: BaseException | str) -> None:
        if not self._down:
            log.warning("MLflow %s failed at %s (%s); training goes on, everything stays in %s and is sent "
                        "when the server answers again", what, self.shown_uri, redact_text(first_line(exc)), self.run_dir)  # fmt: skip
        self._down = True

    def _online(self) -> bool:
        """After an outage (or before the first call) a bounded health check, not a 10 s timeout."""
        if self._down or not self._checked:
            self._checked = True
            if reason := reachable(self.uri):
                self._failed("connection", reason)
                return False
        return True

    # ------------------------------------------------------------------ run lifecycle
    def identity(self, settings: Settings, launch: str | None = None) -> dict[str, str]:
        """What makes two trainings in this folder the same one (see the module docstring)."""
        return {"training": training_fingerprint(settings), "dvc_exp": os.environ.get("DVC_EXP_NAME", ""), "launch": launch or ""}

    def start(
        self, run_name: str, settings: Settings, tags: dict[str, str],
        datasets: Sequence[dict[str, str]] = (), launch: str | None = None,
    ) -> str | None:  # fmt: skip
        """Continue the folder's run if it is this training's, else begin a new one (params =
        the redacted flattened settings, `tags`, `datasets` as inputs); None until the server
        has it (it is created at the first call that reaches the server)."""
        if not self.enabled:
            return None
        identity = self.identity(settings, launch)
        saved = self._saved()
        if saved is not None and saved.get("identity") == identity:
            self.state, self._upto = saved, None
            self._append({"kind": "status", "status": "RUNNING"})
        else:
            dvc_exp = identity["dvc_exp"]
            self.state = {
                "uri": self.shown_uri, "experiment": self.settings.experiment, "identity": identity,
                "key": uuid.uuid4().hex, "run_id": None, "experiment_id": None,
                "run_name": f"{run_name}-{dvc_exp}" if dvc_exp else run_name,
                "tags": {**tags, **({"dvc.exp_name": dvc_exp} if dvc_exp else {}), **({"launch": launch} if launch else {})},
                "sent": 0, "sent_step": 0, "stamps": {},
            }  # fmt: skip
            self._save()
            write_text_atomic(self.run_dir / OUTBOX, "")  # the previous run's entries (already skipped by key)
            self._upto = 0  # metrics.jsonl may still be the previous training's until the loop restarts
            self._append({"kind": "params", "params": {k: _param(v) for k, v in flatten(redacted_dict(settings)).items()}})
            if datasets:
                self._append({"kind": "inputs", "datasets": list(datasets)})
        self.sync()
        return self.run_id

    def attach(self) -> str | None:
        """Log to the run the folder already has (e.g. the final evaluation, after training
        ended, from another flow or process) and send what it still holds; None when the
        folder has no run at this store."""
        if self.enabled and self.state is None and (saved := self._saved()) is not None:
            self.state, self._upto = saved, None
            self.sync()
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Send everything, then mark the run ended (or leave both pending for the next process)."""
        if self.state is None or not self.enabled:
            return
        self._upto = None
        self._append({"kind": "status", "status": status})
        if not self.sync():
            log.info("MLflow: %d entries of %s are kept there and sent when this run folder is tracked again",
                     self.pending(), self.run_dir)  # fmt: skip

    # ------------------------------------------------------------------ what callers log
    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        """Numeric values (booleans 0/1, stages as numbers); names keep their `group/name`
        form. Values metrics.jsonl already holds for this step are not recorded twice, and
        a (name, step) already recorded keeps its first value."""
        if self.state is None or not self.enabled:
            return
        row = next((r for r in _read_jsonl(self.run_dir / METRICS) if r.get("iteration") == step), {})
        in_row = numeric_metrics(row)
        key = self.state["key"]
        known = {(k, e["step"]) for e in self._entries() if e.get("kind") == "metrics" and e.get("run") == key for k in e["metrics"]}
        fresh = {k: v for k, v in numeric_metrics(metrics).items() if (k, step) not in known and in_row.get(k) != v}
        if fresh:
            self._append({"kind": "metrics", "step": int(step), "time_ms": int(time.time() * 1000), "metrics": fresh})
        if self._upto is not None:  # the training has reached `step`: its rows up to there are this run's
            self._upto = max(self._upto, step)
        self.sync()

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.state is not None and self.enabled:
            self._append({"kind": "tags", "tags": {k: redact_text(str(v)) for k, v in tags.items()}})
            self.sync()

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        if self.state is not None and self.enabled:
            files = [str(Path(p).resolve()) for p in paths if Path(p).exists()]
            if files:
                self._append({"kind": "artifacts", "paths": files, "artifact_path": artifact_path})
                self.sync()

    # ------------------------------------------------------------------ sending
    def _entries(self) -> list[dict]:
        return _read_jsonl(self.run_dir / OUTBOX)

    def _pending_rows(self) -> list[dict]:
        rows = [r for r in _read_jsonl(self.run_dir / METRICS) if isinstance(r.get("iteration"), int)]
        return [r for r in rows if r["iteration"] > self.state["sent_step"] and (self._upto is None or r["iteration"] <= self._upto)]

    def pending(self) -> int:
        """Rows and outbox entries not yet sent."""
        if self.state is None:
            return 0
        return len(self._pending_rows()) + max(0, len(self._entries()) - self.state["sent"])

    def sync(self) -> bool:
        """Send what is pending, in order; True when nothing is left."""
        if self.state is None or not self.enabled or not self._online():
            return False
        try:
            if self.state["run_id"] is None:
                self._create_run()
            for row in self._pending_rows():
                self._send_row(row)
            entries = self._entries()
            while self.state["sent"] < len(entries):
                entry = entries[self.state["sent"]]
                if entry.get("run") == self.state["key"]:
                    self._send_entry(entry)
                self.state["sent"] += 1
                self._save()
        except Exception as exc:  # noqa: BLE001 - tracking must never break training
            self._failed("logging", exc)
            return False
        if self._down:
            log.warning("MLflow at %s answers again; what was kept in %s has been sent", self.shown_uri, self.run_dir)
            self._down = False
        return True

    def _create_run(self) -> None:
        """Create the run (once: a creation whose answer was lost is found by its key)."""
        from mlflow.exceptions import MlflowException

        name = self.state["experiment"]
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                exp_id = self.client.create_experiment(name)
            except MlflowException:  # created meanwhile by another process
                exp_id = self.client.get_experiment_by_name(name).experiment_id
        else:
            exp_id = exp.experiment_id
        key = self.state["key"]
        found = self.client.search_runs([exp_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=1)
        if found:
            run = found[0]
        else:
            from visionzero.tracking.provenance import run_tags

            tags = run_tags(extra={**self.state["tags"], RUN_KEY_TAG: key})
            run = self.client.create_run(exp_id, run_name=self.state["run_name"], tags=tags)
        self.state.update(run_id=run.info.run_id, experiment_id=exp_id)
        self._save()

    def _send_row(self, row: dict) -> None:
        step = row["iteration"]
        stamps = self.state["stamps"]
        if str(step) not in stamps:  # fixed before the first send: a resend is an exact duplicate
            stamps[str(step)] = int(time.time() * 1000)
            self._save()
        self._send_metrics(numeric_metrics(row), stamps[str(step)], step)
        self.state["sent_step"] = step
        self.state["stamps"] = {k: v for k, v in stamps.items() if int(k) > step}
        self._save()

    def _send_metrics(self, metrics: dict[str, float], stamp: int, step: int) -> None:
        from mlflow.entities import Metric

        items = [Metric(k, v, stamp, step) for k, v in sorted(metrics.items())]
        for i in range(0, len(items), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i : i + MAX_METRICS])

    def _send_entry(self, entry: dict) -> None:
        kind, run_id = entry["kind"], self.run_id
        if kind == "metrics":
            self._send_metrics(entry["metrics"], entry["time_ms"], entry["step"])
        elif kind == "params":
            from mlflow.entities import Param

            items = [Param(k, v) for k, v in entry["params"].items()]
            for i in range(0, len(items), MAX_PARAMS):
                self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS])
        elif kind == "inputs":
            from mlflow.entities import Dataset, DatasetInput, InputTag
            from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

            context = [InputTag(MLFLOW_DATASET_CONTEXT, "train")]
            self.client.log_inputs(run_id, datasets=[DatasetInput(Dataset(**d), tags=context) for d in entry["datasets"]])
        elif kind == "tags":
            for key, value in entry["tags"].items():
                self.client.set_tag(run_id, key, value)
        elif kind == "artifacts":
            for path in entry["paths"]:
                if Path(path).exists():  # re-uploading a path overwrites it: idempotent
                    self.client.log_artifact(run_id, path, entry.get("artifact_path"))
        elif kind == "status":
            if entry["status"] == "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.client.set_terminated(run_id, entry["status"])

    @property
    def run_url(self) -> str | None:
        if self.run_id is None:
            return None
        return f"{self.shown_uri} experiment {self.experiment_id} run {self.run_id}"


def _param(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
