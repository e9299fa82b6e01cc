"""The environment a run used, as MLflow run tags (`env.*`).

`env.lock_sha256` names the lock file (requirements/lock.txt) the environment was installed
from; `env.lock_drift` lists installed packages whose version differs from it ("none" when
the environment is the lock), so the hash is only trusted when the drift is "none". The
interpreter and torch build (CPU or CUDA, which the lock leaves to the machine) come along.
"""

from __future__ import annotations

import hashlib
import platform
import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
_MAX_DRIFT_CHARS = 500  # a tag stays readable; the first few mismatches say enough


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def locked_versions(lock: str | Path = LOCK) -> dict[str, str]:
    """{normalised package name: version} of every `name==version` line of a lock file."""
    pins = {}
    for line in Path(lock).read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line.strip()):
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def lock_drift(lock: str | Path = LOCK) -> list[str]:
    """Installed packages whose version is not the locked one ("name==locked (installed X)").
    Packages of extras that were not installed are not drift."""
    drift = []
    for name, want in sorted(locked_versions(lock).items()):
        have = _version(name)
        if have != "not installed" and have != want:
            drift.append(f"{name}=={want} (installed {have})")
    return drift


def env_tags(lock: str | Path = LOCK) -> dict[str, str]:
    """{"env.lock_sha256", "env.lock_drift", "env.python", "env.torch", "env.transformers"};
    the lock entries are "none" when the package runs without the repository's lock file."""
    path = Path(lock)
    tags = {
        "env.python": platform.python_version(),
        "env.torch": _version("torch"),
        "env.transformers": _version("transformers"),
    }
    if path.is_file():
        drift = ", ".join(lock_drift(path)) or "none"
        tags["env.lock_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        tags["env.lock_drift"] = drift if len(drift) <= _MAX_DRIFT_CHARS else drift[: _MAX_DRIFT_CHARS - 3] + "..."
    else:
        tags["env.lock_sha256"] = tags["env.lock_drift"] = "none"
    return tags
