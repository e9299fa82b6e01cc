"""Where a run came from: git commit and the DVC hashes of its data and base model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def git_commit(root: str | Path = ".") -> dict[str, str]:
    """{'git.commit': sha, 'git.dirty': 'true'|'false'}; empty outside a git checkout."""
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        sha = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": sha, "git.dirty": str(dirty).lower()}


def dvc_hashes(root: str | Path = ".", stages: tuple[str, ...] = ("base_model", "pairs")) -> dict[str, str]:
    """md5 of each output of the named stages (and their foreach children) from dvc.lock.

    Reading dvc.lock directly keeps DVC out of the training process; the lock file is what
    `dvc repro` wrote for exactly the data this run consumed.
    """
    lock = Path(root) / "dvc.lock"
    if not lock.exists():
        return {}
    data = yaml.safe_load(lock.read_text()) or {}
    tags = {}
    for name, stage in (data.get("stages") or {}).items():
        if name.split("@")[0] not in stages:
            continue
        for out in stage.get("outs", []):
            digest = out.get("md5") or out.get("hash")
            if digest:
                tags[f"dvc.{name}.{out['path']}"] = str(digest)
    return tags
