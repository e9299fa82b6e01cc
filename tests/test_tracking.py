"""MLflow with a real sqlite store: run logging, registry aliases, the promotion gate, a dead server."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.helpers import copy_model
from visionzero.settings import load_settings
from visionzero.tracking.mlflow_run import RunTracker
from visionzero.tracking.provenance import dvc_hashes, git_commit
from visionzero.tracking.registry import promotion_gate, register_checkpoint

pytestmark = pytest.mark.pipeline


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return load_settings(None, [f"tracking.uri={uri}", "registry.margin=0.05"]), uri


def test_run_params_metrics_and_resume(store, tmp_path):
    from mlflow import MlflowClient

    settings, uri = store
    tracker = RunTracker(settings.tracking, tmp_path / "run")
    run_id = tracker.start("test", settings, {"git.commit": "abc"})
    tracker.log_metrics({"game/vote_accuracy": 0.25, "stage": "clue", "switched": True}, step=1)
    tracker.log_metrics({"game/vote_accuracy": 0.5}, step=2)
    tracker.end()
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["game.n_players"] == "4" and run.data.params["rewards.lambda"] == "0.1"
    assert len(run.data.params) > 100  # the whole flattened params.yaml
    assert run.data.tags["git.commit"] == "abc" and "mlflow.source.type" in run.data.tags
    history = client.get_metric_history(run_id, "game/vote_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert client.get_metric_history(run_id, "switched")[0].value == 1.0
    # a second tracker on the same folder continues the same run (resumed training)
    again = RunTracker(settings.tracking, tmp_path / "run")
    assert again.start("test", settings, {}) == run_id

    # after training ended, another process logs the final evaluation on that same run
    later = RunTracker(settings.tracking, tmp_path / "run")
    assert later.attach() == run_id
    later.log_metrics({"final_eval/win_rate": 0.5}, step=2)
    (tmp_path / "results.json").write_text("{}")
    later.log_artifacts([tmp_path / "results.json"], "eval")
    assert later.enabled
    assert client.get_metric_history(run_id, "final_eval/win_rate")[0].value == 0.5
    assert [a.path for a in client.list_artifacts(run_id, "eval")] == ["eval/results.json"]
    # a folder without a run has nothing to attach to, and logging is a no-op
    alone = RunTracker(settings.tracking, tmp_path / "elsewhere")
    assert alone.attach() is None
    alone.log_artifacts([tmp_path / "results.json"])
    alone.log_metrics({"a": 1.0}, step=1)
    assert alone.enabled


def test_registry_and_gate_on_a_sqlite_store(store, tmp_path, tiny_settings, monkeypatch):
    """The local store: versions are logged models of their own; the gate promotes, rejects a
    challenger within the margin or one that did not beat the frozen opponent, and refuses to
    compare evaluations against another opponent."""
    from mlflow import MlflowClient

    from visionzero.models.loading import resolve_spec

    settings, uri = store
    monkeypatch.chdir(tmp_path)  # the sqlite store keeps its artifacts in ./mlruns
    client = MlflowClient(uri)
    reg = settings.registry
    tiny = resolve_spec(tiny_settings.model)
    same = {"eval_set": "set-a", "protocol": "rules-a", "opponent": "sha256:base"}

    def register(name: str, nudge: float, win_rate: float, identity=same, s=settings, **more: float) -> str:
        folder = copy_model(tiny, tmp_path / name, nudge)
        return register_checkpoint(client, s, folder, None, {"win_rate": win_rate, **more}, identity).version

    import mlflow

    before = mlflow.get_tracking_uri()
    v1 = register("a", 0.0, 0.55)
    assert mlflow.get_tracking_uri() == before  # logging the model leaves the process's global URI alone
    first = promotion_gate(client, reg, v1)
    assert first.promoted and str(client.get_model_version_by_alias(reg.model_name, "champion").version) == v1
    assert client.get_model_version(reg.model_name, v1).source.startswith("models:/m-")

    v2 = register("b", 0.01, 0.58)  # +0.03 < margin
    second = promotion_gate(client, reg, v2)
    assert not second.promoted and "<=" in second.reason
    assert str(client.get_model_version_by_alias(reg.model_name, "champion").version) == v1
    assert str(client.get_model_version_by_alias(reg.model_name, "challenger").version) == v2
    assert client.get_model_version(reg.model_name, v2).tags["promotion"] == "rejected"

    v3 = register("c", 0.02, 0.7)
    third = promotion_gate(client, reg, v3)
    assert third.promoted and third.champion_version == v1 and third.champion_value == 0.55
    assert str(client.get_model_version_by_alias(reg.model_name, "champion").version) == v3

    # far better, but against another opponent: not compared, champion stays
    v4 = register("d", 0.03, 0.95, {**same, "opponent": "sha256:other"})
    fourth = promotion_gate(client, reg, v4)
    assert not fourth.promoted and not fourth.comparable and fourth.reason.startswith("not compared")
    assert "opponent" in fourth.reason
    assert client.get_model_version(reg.model_name, v4).tags["promotion"] == "not-comparable"
    assert str(client.get_model_version_by_alias(reg.model_name, "champion").version) == v3

    # merit: a model whose match against the frozen opponent is not won (interval includes 0.5)
    # is refused, however it compares with the champion; the check can be switched off
    v5 = register("e", 0.04, 0.99, **{"match/ci_low": 0.45})
    fifth = promotion_gate(client, reg, v5)
    assert not fifth.promoted and fifth.reason.startswith("not shown to beat the frozen opponent")
    assert "0.4500" in fifth.reason and client.get_model_version(reg.model_name, v5).tags["promotion"] == "rejected"
    assert str(client.get_model_version_by_alias(reg.model_name, "champion").version) == v3
    assert promotion_gate(client, reg.model_copy(update={"beat_opponent": False}), v5).promoted

    # a first champion too: being first is not merit
    fresh = settings.model_copy(update={"registry": reg.model_copy(update={"model_name": "vz-merit"})})
    lucky = register("f", 0.05, 0.6, s=fresh, **{"match/ci_low": 0.48})
    assert not promotion_gate(client, fresh.registry, lucky).promoted
    won = register("g", 0.06, 0.6, s=fresh, **{"match/ci_low": 0.53})
    merit = promotion_gate(client, fresh.registry, won)
    assert merit.promoted and merit.reason.endswith("won its match (match/ci_low 0.5300 > 0.5)")
    assert str(client.get_model_version_by_alias("vz-merit", "champion").version) == won


def test_dead_server_warns_once_and_training_goes_on(tmp_path, caplog):
    settings = load_settings(None, ["tracking.uri=http://127.0.0.1:9"])
    tracker = RunTracker(settings.tracking, tmp_path / "run")
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="visionzero.tracking"):
        assert tracker.start("x", settings, {}) is None
        tracker.log_metrics({"a": 1.0}, step=1)
        tracker.end()
    assert time.perf_counter() - start < 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "127.0.0.1:9" in warnings[0].getMessage()
    assert tracker.enabled and tracker.run_id is None and tracker.pending() > 0  # kept, not dropped


def test_registry_client_fails_fast_on_a_dead_server():
    """Registering needs the server: a dead one is one clear error in seconds, not MLflow's retries."""
    from visionzero.tracking.mlflow_run import TrackingUnavailable, mlflow_client

    start = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match=r"MLflow at http://127.0.0.1:9 is unreachable"):
        mlflow_client("http://127.0.0.1:9")
    assert time.perf_counter() - start < 10


def test_dead_server_after_training_warns_once(tmp_path, caplog):
    """The final evaluation's tracker (a new process) finds the run on disk but the server gone."""
    settings = load_settings(None, ["tracking.uri=http://127.0.0.1:9"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run/mlflow_run.json").write_text(json.dumps({"uri": "http://127.0.0.1:9", "run_id": "r", "experiment_id": "1"}))
    tracker = RunTracker(settings.tracking, tmp_path / "run")
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="visionzero.tracking"):
        assert tracker.attach() == "r"  # the folder's run: what it logs waits for the server
        tracker.log_metrics({"a": 1.0}, step=1)
        tracker.log_artifacts([tmp_path / "run/mlflow_run.json"])
    assert time.perf_counter() - start < 10
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_provenance_tags(tmp_path, repo_root):
    assert len(git_commit(repo_root).get("git.commit", "")) in (0, 40)
    lock = {"stages": {"pairs@clevr": {"outs": [{"path": "runs/pairs/clevr", "md5": "abc.dir"}]},
                       "train": {"outs": [{"path": "runs/train/checkpoints", "md5": "zzz"}]}}}  # fmt: skip
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))
    assert dvc_hashes(tmp_path) == {"dvc.pairs@clevr.runs/pairs/clevr": "abc.dir"}


def test_a_temporary_dvc_workspace_logs_to_the_projects_store(tmp_path, monkeypatch):
    """`dvc exp run --temp` runs the stage in a copy that is deleted afterwards, with DVC_ROOT
    (dvc/repo/experiments/queue/base.py) naming the real project: the default relative store
    resolves there, and the run carries the experiment's name."""
    from mlflow import MlflowClient

    project, workspace = tmp_path / "project", tmp_path / "project/.dvc/tmp/exps/tmpabc"
    workspace.mkdir(parents=True)
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("DVC_ROOT", str(project))
    monkeypatch.setenv("DVC_EXP_NAME", "exp-quiet-owl")
    settings = load_settings(None, ["tracking.uri=sqlite:///mlflow.db"])
    tracker = RunTracker(settings.tracking, workspace / "runs/train")
    run_id = tracker.start("t", settings, {})
    tracker.end()
    assert (project / "mlflow.db").exists() and not (workspace / "mlflow.db").exists()
    run = MlflowClient(f"sqlite:///{project}/mlflow.db").get_run(run_id)
    assert run.data.tags["dvc.exp_name"] == "exp-quiet-owl" and run.info.run_name == "t-exp-quiet-owl"


def test_run_tags_are_mlflows_own(repo_root, monkeypatch):
    from visionzero.tracking.provenance import run_tags

    tags = run_tags(repo_root, {"x": "y"})
    assert {"mlflow.user", "mlflow.source.name", "mlflow.source.type"} <= set(tags) and tags["x"] == "y"
    commit = git_commit(repo_root).get("git.commit")
    assert tags.get("mlflow.source.git.commit") == commit and "git.commit" not in tags


def test_a_torn_outbox_line_loses_no_later_entry(store, tmp_path):
    from mlflow import MlflowClient

    settings, uri = store
    tracker = RunTracker(settings.tracking, tmp_path / "run")
    run_id = tracker.start("t", settings, {})
    with (tmp_path / "run/mlflow_outbox.jsonl").open("a") as fh:
        fh.write('{"kind": "metrics", "st')  # a crash in the middle of an append
    tracker.log_metrics({"eval/win_rate": 0.5}, 3)
    assert [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, "eval/win_rate")] == [(3, 0.5)]
