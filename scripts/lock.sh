#!/usr/bin/env bash
# Regenerate requirements/lock.txt: the exact version of every package the default install
# (extras pipeline,dev) resolves to on this machine kind (Linux x86_64, CPython 3.11, CPU).
#
#   make lock            after changing a dependency in pyproject.toml or a pin in constraints
#
# torch is left out of the lock: requirements/constraints.txt pins its version, and which
# build that is depends on the machine (the local CPU wheel here, the CUDA build from PyPI on a
# GPU machine, whose nvidia-* packages torch pins exactly itself). torch's own dependencies
# (sympy, networkx, ...) are in the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
source scripts/find_links.sh
UV_LINK_MODE=copy "$venv/bin/uv" pip compile pyproject.toml --extra pipeline --extra dev \
  -c requirements/constraints.txt "${find_links[@]}" --python "$venv/bin/python" \
  --no-emit-package torch --custom-compile-command "make lock" -q -o requirements/lock.txt
# setup.sh installs the lock only on the Python it was resolved for (numpy and scipy releases
# drop old Pythons): the version is recorded in the file.
python_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
sed -i "2a # python: $python_version" requirements/lock.txt
echo "lock: requirements/lock.txt ($(grep -c '==' requirements/lock.txt) packages)"
