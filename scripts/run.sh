#!/usr/bin/env bash
# The main job on the embedded default (offline tiny VLM, CPU): see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
vz() { .venv/bin/vision-zero "$@"; }
vz params check
vz model build-tiny
vz model info
