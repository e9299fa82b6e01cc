"""Where a run came from: MLflow's own source/git/user tags, the DVC hashes of its data and
base model, and the pair manifests it trained on as MLflow datasets."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from collections.abc import Sequence
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


def run_tags(root: str | Path = ".", extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags of a new training run: MLflow's own context (mlflow.user, mlflow.source.name
    and .type, mlflow.source.git.commit, ... as `mlflow.start_run` would set them), whether
    the checkout is dirty (MLflow does not say), the DVC hashes and `extra`."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

    git = git_commit(root)
    tags = resolve_tags({**({"git.dirty": git["git.dirty"]} if git else {}), **dvc_hashes(root), **(extra or {})})
    if git and MLFLOW_GIT_COMMIT not in tags:  # MLflow looks from the entry script, which may sit outside the checkout
        tags[MLFLOW_GIT_COMMIT] = git["git.commit"]
    return tags


def pair_datasets(pairs_dirs: Sequence[str | Path]) -> list[dict[str, str]]:
    """One MLflow dataset per pairs folder with a manifest: name = folder, digest = the
    manifest's sha256 (the same pairs give the same bytes), profile = pair counts; plain
    dicts (the tracker keeps them on disk until the server takes them)."""
    from visionzero.pairs.manifest import MANIFEST_NAME, read_manifest

    datasets = []
    for folder in map(Path, pairs_dirs):
        manifest = folder / MANIFEST_NAME
        if not manifest.is_file():
            continue
        records = read_manifest(folder)
        counts = Counter(r.split for r in records)
        datasets.append({
            "name": f"pairs-{folder.name}",
            "digest": hashlib.sha256(manifest.read_bytes()).hexdigest()[:32],
            "source_type": "local",
            "source": json.dumps({"uri": str(manifest.resolve())}),
            "profile": json.dumps({"pairs": len(records), **{f"{k}_pairs": v for k, v in sorted(counts.items())},
                                   "domains": sorted({r.domain for r in records})}),
        })  # fmt: skip
    return datasets
