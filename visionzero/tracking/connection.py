"""Reaching the MLflow store: where it is, with which credentials, and whether it answers.

- A relative local store (the default `sqlite:///mlflow.db`, `./mlruns`, `file:mlruns`) is
  resolved against the project root: DVC_ROOT, which DVC sets for every stage command (under
  `dvc exp run --temp` to the real repository, not the temporary copy that is deleted
  afterwards), else the working directory.
- Credentials in a URI (`http://user:password@host`) reach MLflow the supported way,
  MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, and the client is given the URI
  without them, so no error message carries the password; the health check sends the same
  credentials as a basic-auth header (or MLFLOW_TRACKING_TOKEN as a bearer token).
- Every call is bounded: the health check by 3 s, MLflow's HTTP calls by
  MLFLOW_HTTP_REQUEST_TIMEOUT with no retries (`_fail_fast`); the caller retries later.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

from visionzero.settings.secrets import redact_text, split_credentials

HEALTH_TIMEOUT_S = 3


class TrackingUnavailable(RuntimeError):
    """The MLflow server cannot be reached (raised where tracking is required: the registry)."""


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd())


def resolve_store_uri(uri: str, root: str | Path | None = None) -> str:
    """`uri` with a relative local store made absolute against `root` (default: project_root())."""
    base = Path(root) if root is not None else project_root()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///") :]
        return uri if path.startswith(":memory:") or not path else f"sqlite:///{(base / path).resolve()}"
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return (base / uri[len("file:") :]).resolve().as_uri()
    if uri and ":" not in uri:  # a bare path such as ./mlruns (MLflow's "databricks" has no slash)
        return (base / uri).resolve().as_uri() if "/" in uri or uri == "mlruns" else uri
    return uri


def export_credentials(uri: str) -> str:
    """The URI without user and password; those go to MLflow's own environment variables."""
    bare, user, password = split_credentials(uri)
    if user is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
    if password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    return bare


def credentials_out_of(overrides: Sequence[str]) -> list[str]:
    """`--set tracking.uri=http://user:pw@host` as `tracking.uri=http://host`, with the
    credentials exported for MLflow: what a flow script passes on as (stored) Prefect
    flow parameters must not hold a password."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "tracking.uri":
            item = f"{key}={export_credentials(value.strip())}"
        out.append(item)
    return out


def _auth_headers() -> dict[str, str]:
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None and password is not None:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def reachable(uri: str) -> str | None:
    """None if the tracking URI answers (or is a local store), else the reason in a few words."""
    bare = export_credentials(resolve_store_uri(uri))
    if not bare.startswith(("http://", "https://")):
        return None
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(bare.rstrip("/") + "/health", headers=_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=HEALTH_TIMEOUT_S) as response:
            return None if response.status == 200 else f"health check answered {response.status}"
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        return redact_text(str(getattr(exc, "reason", exc)))


def _fail_fast() -> None:
    """A dead server must not hang a call in MLflow's HTTP retries (default: 7, with backoff)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def new_client(uri: str):
    """An MlflowClient for `uri` (resolved, credentials exported), calls bounded in time."""
    from mlflow import MlflowClient

    _fail_fast()
    return MlflowClient(tracking_uri=export_credentials(resolve_store_uri(uri)))


def mlflow_client(uri: str):
    """An MlflowClient for `uri` that fails fast: TrackingUnavailable if the server is down."""
    if reason := reachable(uri):
        raise TrackingUnavailable(f"MLflow at {redact_text(uri)} is unreachable ({reason})")
    return new_client(uri)
