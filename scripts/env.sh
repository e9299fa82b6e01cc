# Offline hygiene shared by `make test`, `make run` and .ci/run (source it; no side effects
# beyond these variables). Every tool keeps its state inside the workspace.
_vz_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_HUB_DISABLE_PROGRESS_BARS=1
export TOKENIZERS_PARALLELISM=false
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true
export DVC_NO_ANALYTICS=1
export DVC_SITE_CACHE_DIR="${DVC_SITE_CACHE_DIR:-$_vz_root/.cache/dvc-site}"
export PREFECT_HOME="${PREFECT_HOME:-$_vz_root/.cache/prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
unset _vz_root
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"
# Prefect creates its home with a plain mkdir: the parent must exist on a fresh clone.
mkdir -p "$PREFECT_HOME" "$DVC_SITE_CACHE_DIR"
