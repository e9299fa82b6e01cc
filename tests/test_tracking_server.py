"""Tracking a real training against a real `mlflow server`: one run per training, every step
exactly once through an outage and a crash, and no credential written anywhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from visionzero.pairs.manifest import PairRecord, write_manifest
from visionzero.settings import load_settings
from visionzero.tracking import mlflow_run
from visionzero.tracking.mlflow_run import RUN_FILE, RunTracker
from visionzero.tracking.provenance import pair_datasets
from visionzero.train.loop import IterativeSPO

from .helpers import MlflowServer, simple_pairs

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

SMALL = [
    "runtime.device=cpu", "game.n_players=3", "game.rounds=1", "game.group_size=2",
    "game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6", "train.games_per_iteration=2",
    "train.lr=1e-3", "train.phase.mode=alternate", "train.phase.period=1", "train.micro_batch_size=4",
]  # fmt: skip


def _settings(model_cache, uri, *extra):
    return load_settings(None, [f"model.cache_dir={model_cache}", f"tracking.uri={uri}", "tracking.experiment=t", *SMALL, *extra])


def _pairs(folder: Path):
    """Plain pairs with a manifest (the dataset the run logs as its input)."""
    pool = simple_pairs(folder, 4)
    write_manifest(folder, [PairRecord(p.id, "clevr", "train", Path(p.original).name, Path(p.edited).name, i, [])
                            for i, p in enumerate(pool)])  # fmt: skip
    return pool


def _train(settings, run_dir, pool, until=None, log_last=True, launch=None) -> RunTracker:
    """What flows/train.py does per iteration, without Prefect: update, then log-metrics."""
    tracker = RunTracker(settings.tracking, run_dir)
    tracker.start("t", settings, {}, datasets=pair_datasets([Path(pool[0].original).parent]), launch=launch)
    spo = IterativeSPO(settings, run_dir, pool, restart_on_change=True)
    try:
        target = until or settings.train.iterations
        while spo.iteration < target:
            metrics = spo.run_iteration()
            if log_last or spo.iteration < target:
                tracker.log_metrics(metrics, metrics["iteration"])
    finally:
        spo.close()
    return tracker


def _steps(client, run_id, key="game/vote_accuracy"):
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_one_run_per_training(mlflow_server, model_cache, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    client = MlflowClient(mlflow_server)
    pool, run_dir = _pairs(tmp_path / "pairs"), tmp_path / "run"
    first = _settings(model_cache, mlflow_server, "train.iterations=2")
    t = _train(first, run_dir, pool)
    t.end()
    a = t.run_id
    run = client.get_run(a)
    assert run.data.params["train.lr"] == "0.001" and run.info.status == "FINISHED"
    assert _steps(client, a) == [1, 2]
    # MLflow's own conventions: source/user tags, the stage as a number, the pairs as a dataset
    assert {"mlflow.source.name", "mlflow.source.type", "mlflow.user"} <= set(run.data.tags)
    assert [m.value for m in client.get_metric_history(a, "stage_id")] == [0.0, 1.0]  # decision, clue
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == "pairs-pairs" and len(dataset.digest) == 32 and json.loads(dataset.profile)["pairs"] == 4

    # resuming the folder with a resumable change (more iterations) continues the same run
    t = _train(_settings(model_cache, mlflow_server, "train.iterations=3"), run_dir, pool)
    t.end()
    assert t.run_id == a and _steps(client, a) == [1, 2, 3]

    # a changed param is a new training: a new run whose params say so, steps logged once
    t = _train(_settings(model_cache, mlflow_server, "train.iterations=2", "train.lr=5e-4"), run_dir, pool)
    t.end()
    b = t.run_id
    assert b != a and client.get_run(b).data.params["train.lr"] == "0.0005"
    assert _steps(client, b) == [1, 2] and _steps(client, a) == [1, 2, 3]

    # a DVC experiment (same settings) is its own run, tagged with the experiment's name,
    # and it receives the whole local record of the training
    monkeypatch.setenv("DVC_EXP_NAME", "exp-tidy-bass")
    t = _train(_settings(model_cache, mlflow_server, "train.iterations=2", "train.lr=5e-4"), run_dir, pool)
    t.end()
    c = t.run_id
    assert c not in (a, b) and client.get_run(c).data.tags["dvc.exp_name"] == "exp-tidy-bass"
    assert _steps(client, c) == [1, 2]
    # so is a new deployment run (Prefect): same settings, another launch
    monkeypatch.delenv("DVC_EXP_NAME")
    t = _train(_settings(model_cache, mlflow_server, "train.iterations=2", "train.lr=5e-4"), run_dir, pool, launch="flow-run-2")
    t.end()
    assert t.run_id not in (a, b, c) and _steps(client, t.run_id) == [1, 2]


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    srv = MlflowServer(root).start()
    yield srv
    srv.stop()


class Killed(BaseException):
    """The process dies here (not an error tracking could catch)."""


def test_every_step_exactly_once_through_an_outage_and_crashes(server, model_cache, tmp_path, monkeypatch, caplog):
    from mlflow import MlflowClient

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    pool, run_dir = _pairs(tmp_path / "pairs"), tmp_path / "run"
    settings = _settings(model_cache, server.uri, "train.iterations=7", "train.checkpoint_every=1")
    t = _train(settings, run_dir, pool, until=2)
    t.log_metrics({"eval/win_rate": 0.5}, 2)
    run_id = t.run_id
    assert run_id is not None

    # the server goes away for three iterations; the third is killed before its log-metrics
    server.stop()
    with caplog.at_level(logging.WARNING, logger="visionzero.tracking"):
        _train(settings, run_dir, pool, until=5, log_last=False)
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "training goes on" in failed[0].getMessage()  # once per outage, not per call

    server.start()  # same port, same store
    # iteration 6 is sent, then the process is killed before it could note so: the resend
    # at resume carries the same timestamps, which MLflow keeps once
    real_write = mlflow_run.write_text_atomic

    def killed_after_send(path, text):
        if Path(path).name == RUN_FILE and json.loads(text)["sent_step"] == 6:
            raise Killed
        return real_write(path, text)

    monkeypatch.setattr(mlflow_run, "write_text_atomic", killed_after_send)
    with pytest.raises(Killed):
        _train(settings, run_dir, pool, until=6)  # resume: sends 3, 4, 5 (never logged) and then 6
    monkeypatch.setattr(mlflow_run, "write_text_atomic", real_write)
    assert json.loads((run_dir / RUN_FILE).read_text())["sent_step"] == 5

    t = _train(settings, run_dir, pool)  # resume again: iteration 7
    t.log_metrics({"eval/win_rate": 0.75}, 7)
    t.end()
    assert t.run_id == run_id and t.pending() == 0
    client = MlflowClient(server.uri)
    for key in ("game/vote_accuracy", "stage_id", "update/loss", "time/iteration_s"):
        assert _steps(client, run_id, key) == [1, 2, 3, 4, 5, 6, 7], key
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/win_rate")] == [(2, 0.5), (7, 0.75)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_experiment_by_name("t").experiment_id])) == 1
