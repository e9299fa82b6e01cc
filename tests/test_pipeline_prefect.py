"""The Prefect pipeline under prefect_test_harness: two tiny iterations, the named tasks, caching,
task run names and tags, artifacts, typed parameters, retries only on transient errors."""

from __future__ import annotations

import json
import re
import typing

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


def _task_runs(flow_run_ids=None) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)) if flow_run_ids else None
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=flt, limit=200)


def _artifacts(key: str, flow_run_id=None) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    if flow_run_id:
        flt.flow_run_id = ArtifactFilterFlowRunId(any_=[flow_run_id])
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=flt)


def test_pipeline_runs_the_named_tasks_and_registers(harness, tmp_path, model_cache, repo_root, monkeypatch, mlflow_server):
    from mlflow import MlflowClient

    from flows.pairs import pairs_flow
    from flows.pipeline import pipeline_flow
    from flows.promote import promote_flow

    monkeypatch.chdir(repo_root)  # flows and tasks are imported from the project root
    # against a real tracking server, as users run it (registering needs its artifact store);
    # train.iterations comes from the typed parameter (the UI form's field), not an override
    overrides = [*(o for o in tiny_overrides(tmp_path, model_cache) if not o.startswith("train.iterations=")),
                 f"tracking.uri={mlflow_server}", "registry.model_name=vz-pipeline"]  # fmt: skip
    out = pipeline_flow("params.yaml", overrides, iterations=2)

    runs = _task_runs()
    names = [r.name for r in runs]
    # every iteration's tasks are named by iteration and stage (alternate, period 1: decision, clue)
    for expected in ("generate-pairs-clevr", "self-play-rollout-it1-decision", "verify-role-rewards-it1-decision",
                     "rlvr-update-it1-decision", "self-play-rollout-it2-clue", "verify-role-rewards-it2-clue",
                     "grpo-update-it2-clue", "log-metrics-it1", "log-metrics-it2", "evaluate-it1", "evaluate-it2",
                     "game-viewer-it2"):  # fmt: skip
        assert expected in names, (expected, sorted(names))
    prefixes = ("register-model", "promote-model", "base-stage", "start-mlflow-run", "training-report")
    for prefix in prefixes:
        assert any(n.startswith(prefix) for n in names), prefix
    by_name = {r.name: r for r in runs}
    # one-off tasks carry the domain; the per-iteration ones no tags (each tag costs a concurrency
    # request to the API, ~2 s on the local server: flows/train.py), their names say the stage
    assert "domain:clevr" in by_name["generate-pairs-clevr"].tags and "domain:clevr" in by_name["evaluate-it2"].tags
    assert any(n.startswith("base-stage") and "domain:clevr" in r.tags for n, r in by_name.items())
    for name in ("self-play-rollout-it1-decision", "verify-role-rewards-it2-clue", "grpo-update-it2-clue", "log-metrics-it2"):
        assert by_name[name].tags == [], (name, by_name[name].tags)

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
    # one win_rate series: step 1 during training, step 2 from the evaluate flow
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/win_rate")] == [1, 2]
    assert "eval/results.json" in [a.path for a in client.list_artifacts(run.info.run_id, "eval")]
    decision = json.loads((tmp_path / "runs/register/decision.json").read_text())
    results = json.loads((tmp_path / "runs/eval/results.json").read_text())
    # promotion on merit: 2 held-out games cannot show a won match against the frozen base
    assert results["match/ci_low"] < 0.5 and not decision["promoted"] and decision["metric"] == "win_rate"
    assert decision["reason"].startswith("not shown to beat the frozen opponent")
    assert out["game_viewer"] and (tmp_path / "runs/train/curves.csv").exists()
    # the final evaluation's curve holds the training's evaluation (iteration 1), then its own
    curve = (tmp_path / "runs/eval/curve.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in curve[1:]] == ["1", "2"] and "win_rate" in curve[0].split(",")

    # artifacts: a table per evaluation (in training and the final one), the MLflow run, the decision
    tables = _artifacts("vision-zero-evaluation")
    assert len(tables) == 2 and {a.type for a in tables} == {"table"}
    final = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    rows = {row["metric"]: row["value"] for row in final}
    assert rows["win_rate"] == pytest.approx(results["win_rate"])
    link = _artifacts("vision-zero-mlflow-run")  # a server: a link to the run's page
    assert len(link) == 1 and f"({mlflow_server}/#/experiments/" in link[0].data and out["mlflow_run_id"] in link[0].data
    promotion = _artifacts("vision-zero-promotion")
    assert len(promotion) == 1 and "not promoted" in promotion[0].data and decision["reason"] in promotion[0].data

    # promoting again without training anything registers no new version; without the merit
    # check the gate promotes it (no champion yet), and a third time it is already champion
    lenient = [*overrides, "registry.beat_opponent=false"]
    again = promote_flow("params.yaml", lenient)
    assert again["version"] == out["version"] and again["promoted"] and again["reason"].startswith("no champion yet")
    third = promote_flow("params.yaml", lenient)
    assert third["version"] == out["version"] and not third["promoted"] and "already champion" in third["reason"]
    assert len(client.search_model_versions("name = 'vz-pipeline'")) == 1

    # a re-run with the same params and code is a cache hit: the pairs are not generated again
    state = pairs_flow("params.yaml", overrides, return_state=True)
    states = {r.name: r.state.name for r in _task_runs([state.state_details.flow_run_id])}
    assert states["generate-pairs-clevr"] == "Cached"


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
    names = [r.name for r in _task_runs([state.state_details.flow_run_id]) if r.state and r.state.name == "Completed"]
    assert {"self-play-rollout-it1-decision", "verify-role-rewards-it1-decision", "rlvr-update-it1-decision"} <= set(names)
    out = state.result()
    assert out["checkpoint"].endswith("iter-000001/model")
    metrics = [json.loads(line) for line in (tmp_path / "runs/train/metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [1]


def test_mlflow_run_link_artifact_points_at_the_server(harness, tmp_path, mlflow_server, repo_root, monkeypatch):
    """With an http tracking URI the start-mlflow-run task leaves a link to the run's page."""
    import urllib.request

    from prefect import flow

    from tasks.tracking import end_run, start_run

    monkeypatch.chdir(repo_root)
    overrides = [f"tracking.uri={mlflow_server}", f"runtime.workdir={tmp_path}/runs"]

    @flow(name="link-artifact")
    def linked() -> str | None:
        run_id = start_run("params.yaml", overrides, str(tmp_path / "run"), "link")
        end_run("params.yaml", overrides, str(tmp_path / "run"))
        return run_id

    state = linked(return_state=True)
    run_id = state.result()
    [link] = _artifacts("vision-zero-mlflow-run", state.state_details.flow_run_id)
    assert run_id and link.data.startswith(f"[MLflow run {run_id}](")  # Prefect renders a link as markdown
    url = re.search(r"\]\((http[^)]+)\)", link.data).group(1)
    assert url.startswith(f"{mlflow_server}/#/experiments/") and url.endswith(f"/runs/{run_id}")
    with urllib.request.urlopen(url.split("#")[0], timeout=10) as page:  # the MLflow UI answers there
        assert page.status == 200


def test_flow_parameters_are_a_typed_form(repo_root):
    """The deployment's parameter schema (what the UI renders): typed knobs with descriptions,
    domains a choice among the schema's own domains."""
    from prefect.utilities.callables import parameter_schema_from_entrypoint

    from visionzero.settings.schema import PairsSettings

    props = parameter_schema_from_entrypoint(f"{repo_root}/flows/pipeline.py:pipeline_flow").model_dump()["properties"]
    assert {"params", "overrides", "iterations", "domains", "seed"} <= set(props)
    assert all(props[k].get("description") for k in ("params", "overrides", "iterations", "domains", "seed"))
    assert {"type": "integer"} in props["iterations"]["anyOf"] and {"type": "integer"} in props["seed"]["anyOf"]
    domains = next(a for a in props["domains"]["anyOf"] if a.get("type") == "array")["items"]["enum"]
    literal = typing.get_args(PairsSettings.model_fields["domains"].annotation)[0]
    assert sorted(domains) == sorted(typing.get_args(literal))


def test_knobs_become_overrides_that_win(repo_root, monkeypatch):
    from flows.options import with_knobs
    from visionzero.settings import load_settings

    monkeypatch.chdir(repo_root)
    overrides = with_knobs(["train.iterations=9", "train.lr=0.001"], iterations=3, domains=["clevr", "chart"], seed=7)
    s = load_settings("params.yaml", overrides)
    assert (s.train.iterations, s.pairs.domains, s.runtime.seed, s.train.lr) == (3, ["clevr", "chart"], 7, 0.001)
    assert with_knobs(None) == [] and with_knobs(["a.b=1"]) == ["a.b=1"]


def test_transient_errors_are_told_from_permanent_ones(mlflow_server, monkeypatch):
    """Real failures of the stacks the tasks talk through: a dead server or a 5xx is transient,
    a 4xx answer (a run that does not exist) or a bad value is not."""
    import socket

    import requests
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tasks.retry import is_transient
    from visionzero.tracking.mlflow_run import TrackingUnavailable, mlflow_client

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(MlflowException) as missing:
        MlflowClient(mlflow_server).get_run("0" * 32)
    assert missing.value.get_http_status_code() == 404 and not is_transient(missing.value)

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(MlflowException) as refused:
        MlflowClient(dead).get_experiment_by_name("x")
    assert is_transient(refused.value)
    with pytest.raises(TrackingUnavailable) as unavailable:
        mlflow_client(dead)
    assert is_transient(unavailable.value)
    with pytest.raises(requests.ConnectionError) as conn:
        requests.get(dead, timeout=5)
    assert is_transient(conn.value)

    def http_error(status: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(f"{status}", response=response)

    assert is_transient(http_error(503)) and is_transient(http_error(429))
    assert not is_transient(http_error(400)) and not is_transient(http_error(403))
    assert not is_transient(ValueError("bad setting")) and not is_transient(FileNotFoundError("x"))
    try:  # a permanent error raised while handling a transient one is still permanent
        try:
            raise ConnectionError("reset")
        except ConnectionError:
            raise http_error(404)  # noqa: B904 - the implicit context is the point
    except requests.HTTPError as exc:
        assert not is_transient(exc)


def test_tasks_retry_only_transient_errors(harness):
    """The retry condition every retrying task uses, under Prefect's task engine: a
    ValueError fails at once, a ConnectionError is retried."""
    from prefect import flow, task

    from tasks.retry import transient_only

    calls: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=transient_only)
    def fails(kind: str) -> None:
        calls.append(kind)
        raise (ValueError if kind == "permanent" else ConnectionError)(kind)

    @flow
    def both() -> list:
        return [fails(k, return_state=True) for k in ("permanent", "transient")]

    states = both()
    assert all(s.is_failed() for s in states)
    assert calls.count("permanent") == 1 and calls.count("transient") == 3


def test_retrying_tasks_use_the_transient_condition():
    from tasks.base import prepare_base_model
    from tasks.pairs import generate_pairs
    from tasks.retry import transient_only
    from tasks.selfplay import self_play_rollout
    from tasks.tracking import log_artifacts, log_metrics, start_run

    for t in (prepare_base_model, generate_pairs, self_play_rollout, start_run, log_metrics, log_artifacts):
        assert t.retries and t.retry_condition_fn is transient_only, t.name
