#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment from the lock file.
#
#   scripts/setup.sh [EXTRAS]      default EXTRAS: pipeline,dev
#
# Every package gets the exact version in requirements/lock.txt (regenerate it with
# `make lock`), so a fresh clone today installs what it installed yesterday. torch is pinned
# by requirements/constraints.txt: the local CPU wheel where pip's find-links has it (the CPU
# machines), the CUDA build of the same version from PyPI elsewhere.
#
# Idempotent: the install is skipped when pyproject.toml, the constraints, the lock and the
# extras are unchanged since the last successful run (a hash is kept in .venv/.vz-setup-stamp).
# VENV (default .venv) and PYTHON (default python3) can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-pipeline,dev}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"
lock=requirements/lock.txt
stamp="$venv/.vz-setup-stamp"

want=$(cat pyproject.toml requirements/constraints.txt "$lock" | sha256sum | cut -c1-16)-$extras
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: $venv is up to date ($extras)"
  exit 0
fi

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip warns about every configured local index folder it cannot read; that is noise here.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
# uv installs the lock (seconds, not minutes); it comes from the registry at the locked version.
quiet "$venv/bin/python" -m pip install -q "$(grep -E '^uv==' "$lock")"
source scripts/find_links.sh
# The lock as constraints: every package at its locked version, whichever extras are chosen.
# It was resolved for one Python version (recorded in it); on another, install unlocked.
pinned=(-c "$lock")
mode="$(grep -c '==' "$lock") locked packages"
have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
locked_for=$(sed -n 's/^# python: //p' "$lock")
if [[ "$have" != "$locked_for" ]]; then
  echo "setup: $lock is for Python $locked_for, this is $have: installing unlocked versions (make lock re-resolves it)" >&2
  pinned=()
  mode="unlocked"
fi
# UV_LINK_MODE=copy: the cache and the venv may sit on different filesystems (no hardlinks).
UV_LINK_MODE=copy "$venv/bin/uv" pip install -q --python "$venv/bin/python" "${find_links[@]}" \
  -c requirements/constraints.txt "${pinned[@]}" -e ".[$extras]"
echo "$want" > "$stamp"
echo "setup: $venv ready ($extras, $mode)"
