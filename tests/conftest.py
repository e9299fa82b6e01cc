"""Shared fixtures. Tests run offline, with every tool's state kept inside pytest's tmp dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="vz-test-state-"))
# Offline hygiene: set before any test module imports transformers, prefect, mlflow or dvc.
os.environ.update(
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    TOKENIZERS_PARALLELISM="false",
    MLFLOW_DISABLE_TELEMETRY="true",
    DO_NOT_TRACK="true",
    DVC_NO_ANALYTICS="1",
    DVC_SITE_CACHE_DIR=str(_STATE / "dvc-site-cache"),
    PREFECT_HOME=str(_STATE / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    # One thread: the tiny model's ops are too small to gain from more, and a second busy
    # process (Prefect's server, a DVC stage) makes OpenMP threads spin-wait.
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One tiny-model cache for the whole session (building takes a second or two)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_settings(model_cache):
    """Default settings, with the tiny model cached under the session's tmp dir."""
    from visionzero.settings import load_settings

    return load_settings(None, [f"model.cache_dir={model_cache}", "runtime.device=cpu", "runtime.threads=1"])


@pytest.fixture(scope="session")
def tiny_model(tiny_settings):
    """The embedded tiny VLM, loaded once (CPU, fp32)."""
    from visionzero.models import load_model

    return load_model(tiny_settings.model, tiny_settings.runtime)



@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback with its own sqlite store and proxied artifact
    root (what a shared tracking server looks like to the pipeline). Yields its URI."""
    from .helpers import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield server.uri
    finally:
        server.stop()
