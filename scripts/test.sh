#!/usr/bin/env bash
# Run the test suite in the project venv, offline. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Per-run Prefect state: tests must not share (or corrupt) a developer's Prefect database.
PREFECT_HOME="$(mktemp -d)"
export PREFECT_HOME
trap 'rm -rf "$PREFECT_HOME"' EXIT
exec .venv/bin/python -m pytest "$@"
