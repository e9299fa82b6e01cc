#!/usr/bin/env bash
# The main job on the embedded default (offline tiny VLM, CPU): the whole pipeline as one
# Prefect flow (pairs -> Iterative-SPO training -> evaluation -> registry promotion).
# Extra arguments go to the flow, e.g. scripts/run.sh --set train.iterations=8
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
start=$SECONDS
.venv/bin/python -m flows.pipeline "$@"
echo "main job: $((SECONDS - start)) s"
