"""A tracking URI with a password: tracking works with it, and the password is written nowhere
(run folder files, MLflow params and tags, log lines, Prefect's database)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import Field

from visionzero.settings.schema import Section
from visionzero.settings.secrets import redact_text, redacted_dict, split_credentials
from visionzero.tracking.connection import credentials_out_of
from visionzero.tracking.mlflow_run import RunTracker

from .test_tracking_server import _pairs, _settings, _steps, _train

SECRET = "s3cr3t-PW"


@pytest.fixture
def clean_env(monkeypatch):
    """Credentials exported during a test are gone after it."""
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)


def _files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_redaction_rules():
    assert redact_text(f"at http://vz:{SECRET}@host:5000/api and sqlite:///x.db") == "at http://vz:***@host:5000/api and sqlite:///x.db"
    assert redact_text("https://tok3n@host/x") == "https://***@host/x"  # a lone userinfo may be a token
    assert split_credentials(f"http://vz:{SECRET}@h:5/p") == ("http://h:5/p", "vz", SECRET)

    class Demo(Section):
        token: str = Field("", description="an API token", json_schema_extra={"secret": True})
        uri: str = Field(f"http://vz:{SECRET}@h", description="a URI")

    assert redacted_dict(Demo(token="abc")) == {"token": "***", "uri": "http://vz:***@h"}


@pytest.mark.parametrize("fmt", ["yaml", "json", "flat"])
def test_params_show_masks_credentials(fmt, capsys):
    from visionzero.cli.main import main

    assert main(["params", "show", "--format", fmt, "--set", f"tracking.uri=http://vz:{SECRET}@h:5000"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "http://vz:***@h:5000" in out


@pytest.mark.pipeline
@pytest.mark.slow
def test_a_credentialed_uri_tracks_and_leaks_nowhere(mlflow_server, model_cache, tmp_path, clean_env, caplog):
    from mlflow import MlflowClient

    host = mlflow_server.removeprefix("http://")
    settings = _settings(model_cache, f"http://vz:{SECRET}@{host}", "train.iterations=2")
    pool, run_dir = _pairs(tmp_path / "pairs"), tmp_path / "run"
    with caplog.at_level(logging.DEBUG):
        t = _train(settings, run_dir, pool)
        (run_dir / "page.html").write_text("<p>games</p>")
        t.log_artifacts([run_dir / "page.html"], "games")
        t.end()
        # a credentialed server that is down: the warning names it, without the password
        down = _settings(model_cache, f"http://vz:{SECRET}@127.0.0.1:9")
        RunTracker(down.tracking, tmp_path / "down").start("x", down, {})
    # the health check and every call worked with the credentials (the old check failed on them)
    assert t.run_id is not None and os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET
    client = MlflowClient(mlflow_server)
    run = client.get_run(t.run_id)
    assert _steps(client, t.run_id) == [1, 2]
    assert [a.path for a in client.list_artifacts(t.run_id, "games")] == ["games/page.html"]
    assert run.data.params["tracking.uri"] == f"http://vz:***@{host}"
    assert SECRET not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    assert "http://vz:***@127.0.0.1:9" in caplog.text and SECRET not in caplog.text
    assert (run_dir / "checkpoints/iter-000002/state.json").exists()
    assert _files_holding(tmp_path, SECRET) == []


@pytest.mark.pipeline
@pytest.mark.slow
def test_flow_parameters_hold_no_credentials(mlflow_server, model_cache, tmp_path, clean_env, repo_root, monkeypatch):
    """`python -m flows.train --set tracking.uri=http://user:pw@host`: Prefect stores the flow's
    parameters and logs in its database; the password reaches MLflow through its env vars."""
    from mlflow import MlflowClient
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.cli import parse
    from flows.pairs import pairs_flow
    from flows.train import train_flow

    from .test_pipeline_prefect import tiny_overrides

    monkeypatch.chdir(repo_root)
    host = mlflow_server.removeprefix("http://")
    argv = [a for o in tiny_overrides(tmp_path, model_cache) for a in ("--set", o)]
    args = parse("train", [*argv, "--set", "train.iterations=1", "--set", f"tracking.uri=http://vz:{SECRET}@{host}"])
    assert f"tracking.uri=http://{host}" in args.overrides
    with prefect_test_harness(server_startup_timeout=120):
        db = PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[1]
        pairs_flow(args.params, args.overrides)
        out = train_flow(args.params, args.overrides)
        stored = [p for p in Path(db).parent.glob(Path(db).name + "*") if SECRET.encode() in p.read_bytes()]
    assert stored == []
    assert _steps(MlflowClient(mlflow_server), out["run_id"]) == [1]
    assert _files_holding(tmp_path, SECRET) == []


def test_credentials_leave_overrides(clean_env):
    out = credentials_out_of(["train.lr=1", f"tracking.uri=http://vz:{SECRET}@h:5"])
    assert out == ["train.lr=1", "tracking.uri=http://h:5"]
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("vz", SECRET)
