"""The dataset manifest: `manifest.jsonl`, one JSON object per (original, edited) pair.

Every record has `id`, `domain` (clevr | chart | photo), `split` (train | eval), the two
image paths relative to the dataset folder, the pair's own `seed` and the change log
`changes`; plus the domain's description: `scene`/`edited_scene` (CLEVR scene graphs),
`spec`/`edited_spec` (chart specs) or `regions` (boxes of a photo edit), and `source`
(which photo or file a pair came from). Lines are written with sorted keys and in a fixed
order, so the same pairs always give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from visionzero.fileio import write_text_atomic

MANIFEST_NAME = "manifest.jsonl"
Domain = Literal["clevr", "chart", "photo"]
Split = Literal["train", "eval"]
Box = list[int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass
class PairRecord:
    id: str
    domain: Domain
    split: Split
    original: str  # image path relative to the dataset folder
    edited: str
    seed: int  # regenerates this pair alone (see visionzero.pairs.generate.make_pair)
    changes: list[dict[str, Any]]
    scene: list[dict[str, Any]] | None = None
    edited_scene: list[dict[str, Any]] | None = None
    spec: dict[str, Any] | None = None
    edited_spec: dict[str, Any] | None = None
    regions: list[dict[str, Any]] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept so they round-trip

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "extra"}
        data.update(self.extra)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairRecord":
        known = {f.name for f in fields(cls)} - {"extra"}
        required = ("id", "domain", "split", "original", "edited", "seed", "changes")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if data["domain"] not in ("clevr", "chart", "photo"):
            raise ValueError(f"unknown domain {data['domain']!r}")
        if data["split"] not in ("train", "eval"):
            raise ValueError(f"unknown split {data['split']!r}")
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def original_path(self, root: str | Path) -> Path:
        return Path(root) / self.original

    def edited_path(self, root: str | Path) -> Path:
        return Path(root) / self.edited

    def boxes(self) -> list[Box]:
        """The changed areas, in pixels of the images: what a contact sheet outlines."""
        if self.regions is not None:
            return [list(r["box"]) for r in self.regions]
        out: list[Box] = []
        for change in self.changes:
            if "bbox" in change:
                out.append(list(change["bbox"]))
            out.extend(list(b) for b in change.get("bboxes", []))
        return out


def read_manifest(root: str | Path) -> list[PairRecord]:
    """Records of the dataset in folder `root` (or of the manifest file `root` itself)."""
    path = Path(root)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(PairRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise ManifestError(f"{path}:{lineno}: {exc}") from None
    return records


def write_manifest(root: str | Path, records: Iterable[PairRecord]) -> Path:
    """Write `root/manifest.jsonl` atomically (a reader never sees half a file)."""
    return write_text_atomic(Path(root) / MANIFEST_NAME, "".join(r.to_json() + "\n" for r in records))
