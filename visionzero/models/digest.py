"""Content digests of model folders: what a model IS, whatever folder it sits in.

The registry names a version by the digest of its weights (re-registering the same
checkpoint adds no version), the reference mode stores weights under it, and an evaluation
records its opponent by it (the gate compares only evaluations against the same opponent).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

CHUNK = 8 << 20


def _files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _tree_digest(folder: str, stamp: tuple) -> tuple[str, tuple[tuple[str, str, int], ...]]:
    root = Path(folder)
    entries = tuple((p.relative_to(root).as_posix(), file_sha256(p), p.stat().st_size) for p in _files(root))
    h = hashlib.sha256()
    for rel, sha, _ in entries:
        h.update(f"{rel}\0{sha}\n".encode())
    return "sha256:" + h.hexdigest(), entries


def _stamp(folder: Path) -> tuple:
    """Names, sizes and mtimes: a changed file changes the stamp, so the cache never goes stale."""
    return tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in _files(folder))


def tree_manifest(folder: str | Path) -> tuple[str, list[tuple[str, str, int]]]:
    """(digest, [(relative path, sha256, size)]) of every file under `folder`.

    The digest covers file names and contents only (not mtimes or the folder's own name), so
    a copy of a model has the digest of the original. Hashing reads every byte (~1 GB/s);
    repeated calls on an unchanged folder in one process are answered from memory.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"not a model folder: {folder}")
    digest, entries = _tree_digest(str(root), _stamp(root))
    return digest, list(entries)


def tree_digest(folder: str | Path) -> str:
    """`sha256:<hex>` of the folder's file names and contents (see `tree_manifest`)."""
    return tree_manifest(folder)[0]


def model_identity(spec_path: str) -> str:
    """A model's identity for comparisons: the content digest of a local folder, else the
    hub id as given (a hub model is named by its id; pin a revision to make that exact)."""
    path = Path(spec_path).expanduser()
    return tree_digest(path) if path.is_dir() else f"hub:{spec_path}"
