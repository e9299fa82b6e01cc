#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment.
#
#   scripts/setup.sh [EXTRAS]      default EXTRAS: pipeline,dev
#
# Idempotent: the install is skipped when pyproject.toml, the constraints and the extras are
# unchanged since the last successful run (a hash is kept in .venv/.vz-setup-stamp).
# VENV (default .venv) and PYTHON (default python3) can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-pipeline,dev}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.vz-setup-stamp"

want=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)-$extras
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: $venv is up to date ($extras)"
  exit 0
fi

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, alone and pinned, so no resolver step can pull a CUDA build on a CPU machine.
# pip warns about every configured local index folder it cannot read; that is noise here.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "$venv/bin/pip" install -q -c requirements/constraints.txt torch
quiet "$venv/bin/pip" install -q -c requirements/constraints.txt -e ".[$extras]"
echo "$want" > "$stamp"
echo "setup: $venv ready ($extras)"
