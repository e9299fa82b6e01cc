"""The Prefect pipeline under prefect_test_harness: two tiny iterations, the named tasks, caching."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


def tiny_overrides(tmp_path, model_cache) -> list[str]:
    return [
        f"runtime.workdir={tmp_path}/runs", f"model.cache_dir={model_cache}", "runtime.threads=1",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "pairs.n_train=6", "pairs.n_eval=4", "pairs.image_size=112", "pairs.workers=1",
        "game.n_players=3", "game.rounds=1", "game.group_size=2",
        "game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6",
        "train.iterations=2", "train.games_per_iteration=2", "train.phase.mode=alternate", "train.phase.period=1",
        "base.steps=2", "base.polish_steps=1", "base.batch_size=2", "base.eval_examples=2", "base.threads=1",
        "eval.every=1", "eval.games=2", "eval.vqa_per_type=1", "eval.max_new_tokens=6", "tracking.viewer_every=1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _task_names(flow_run_ids=None) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)) if flow_run_ids else None
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flt, limit=200)
    return [(r.name.rsplit("-", 1)[0], r.state.name if r.state else "") for r in runs]


def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1)
    return found[0] if found else None


def test_pipeline_runs_the_named_tasks_and_registers(harness, tmp_path, model_cache, repo_root, monkeypatch, mlflow_server):
    from mlflow import MlflowClient

    from flows.pairs import pairs_flow
    from flows.pipeline import pipeline_flow
    from flows.promote import promote_flow

    monkeypatch.chdir(repo_root)  # flows and tasks are imported from the project root
    # against a real tracking server, as users run it (registering needs its artifact store)
    overrides = [*tiny_overrides(tmp_path, model_cache), f"tracking.uri={mlflow_server}", "registry.model_name=vz-pipeline"]
    out = pipeline_flow("params.yaml", overrides)

    names = [n for n, _ in _task_names()]
    for expected in ("generate-pairs", "self-play-rollout", "verify-role-rewards", "rlvr-update",
                     "grpo-update", "evaluate", "game-viewer", "log-metrics", "register-model", "promote-model"):  # fmt: skip
        assert expected in names, expected
    assert names.count("self-play-rollout") == 2 and names.count("verify-role-rewards") == 2

    client = MlflowClient(mlflow_server)
    assert str(client.get_model_version_by_alias("vz-pipeline", "challenger").version) == out["version"]
    version = client.get_model_version("vz-pipeline", out["version"])
    identity = json.loads((tmp_path / "runs/eval/identity.json").read_text())
    assert version.tags["eval.set"] == identity["eval_set"] and version.tags["eval.opponent"] == identity["opponent"]
    assert version.run_id == out["mlflow_run_id"] and version.source.startswith("models:/m-")
    inputs = {(d.dataset.name, d.tags[0].value) for d in client.get_run(out["mlflow_run_id"]).inputs.dataset_inputs}
    assert {("pairs-clevr", "training"), ("eval-clevr", "evaluation")} <= inputs
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.params["train.iterations"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "game/vote_accuracy")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/win_rate")] == [1]  # during training
    assert [m.step for m in client.get_metric_history(run.info.run_id, "final_eval/win_rate")] == [2]  # evaluate flow
    assert "eval/results.json" in [a.path for a in client.list_artifacts(run.info.run_id, "eval")]
    decision = json.loads((tmp_path / "runs/register/decision.json").read_text())
    assert decision["promoted"] and decision["metric"] == "win_rate"
    assert out["game_viewer"] and (tmp_path / "runs/train/curves.csv").exists()
    artifact = _artifact("promotion-decision")
    assert artifact is not None and decision["reason"] in artifact.data

    # promoting again without training anything registers no new version
    again = promote_flow("params.yaml", overrides)
    assert again["version"] == out["version"] and not again["promoted"] and "already champion" in again["reason"]
    assert len(client.search_model_versions("name = 'vz-pipeline'")) == 1

    # a re-run with the same params and code is a cache hit: the pairs are not generated again
    state = pairs_flow("params.yaml", overrides, return_state=True)
    states = dict(_task_names([state.state_details.flow_run_id]))
    assert states["generate-pairs"] == "Cached"


def test_heavy_steps_in_another_interpreter(harness, tmp_path, model_cache, repo_root, monkeypatch):
    """runtime.python: rollout, rewards and update run as `vision-zero step` subprocesses."""
    import sys

    from flows.pairs import pairs_flow
    from flows.train import train_flow
    from tasks import session as sessions

    monkeypatch.chdir(repo_root)
    # the flow's own process must never load the policy
    monkeypatch.setattr(sessions, "session", lambda *a, **k: pytest.fail("policy loaded in the Prefect process"))
    overrides = [*tiny_overrides(tmp_path, model_cache), "train.iterations=1", f"runtime.python={sys.executable}"]
    pairs_flow("params.yaml", overrides)
    state = train_flow("params.yaml", overrides, return_state=True)
    names = [n for n, s in _task_names([state.state_details.flow_run_id]) if s == "Completed"]
    assert {"self-play-rollout", "verify-role-rewards", "rlvr-update"} <= set(names)
    out = state.result()
    assert out["checkpoint"].endswith("iter-000001/model")
    metrics = [json.loads(line) for line in (tmp_path / "runs/train/metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [1]
