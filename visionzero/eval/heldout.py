"""The fixed evaluation set: held-out pairs (split "eval", never trained on) and VQA questions.

The set depends only on the dataset folders and `eval.*` settings, never on the model, so
two models evaluated with the same settings meet identical pairs, spy seats (seeded by
position), questions and sampling seeds. `EvalSet.fingerprint` names the set in one hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionzero.eval.vqa_questions import Question, vqa_questions
from visionzero.settings.schema import EvalSettings


@dataclass(frozen=True)
class EvalPair:
    """A held-out pair: what the game engine needs (id, domain, absolute image paths) + its record."""

    id: str
    domain: str
    original: str
    edited: str
    record: Any = field(default=None, compare=False, repr=False)  # a PairRecord (scene graph, chart spec)

    @property
    def hint(self) -> str | None:
        """What differs in the spy's image, from the record's change log."""
        from visionzero.game.prompts import pair_hint

        return pair_hint(self.domain, self.record.changes) if self.record is not None else None


@dataclass
class EvalSet:
    pairs: list[EvalPair]  # up to eval.games per domain, in manifest order
    questions: list[Question]
    seed: int

    @property
    def domains(self) -> list[str]:
        return sorted({p.domain for p in self.pairs})

    def fingerprint(self) -> str:
        """A short hash of everything that defines the set (same hash = same games and questions)."""
        body = {
            "seed": self.seed,
            "pairs": [[p.id, p.domain, Path(p.original).name, Path(p.edited).name] for p in self.pairs],
            "questions": [[q.id, q.text, q.answer] for q in self.questions],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def heldout_pairs(dataset_dirs: Sequence[str | Path], split: str = "eval") -> list[EvalPair]:
    """Every pair of `split` in the dataset folders, in folder then manifest order."""
    from visionzero.pairs.manifest import read_manifest

    pairs = []
    for folder in map(Path, dataset_dirs):
        for rec in read_manifest(folder):
            if rec.split == split:
                pairs.append(EvalPair(rec.id, rec.domain, str(folder / rec.original), str(folder / rec.edited), rec))
    if not pairs:
        raise ValueError(f"no {split} pairs in {', '.join(map(str, dataset_dirs))}")
    return pairs


def first_per_domain(pairs: Sequence[EvalPair], n: int) -> list[EvalPair]:
    """The first `n` pairs of each domain, order kept (growing n only appends games)."""
    taken: dict[str, int] = {}
    out = []
    for p in pairs:
        if taken.get(p.domain, 0) < n:
            taken[p.domain] = taken.get(p.domain, 0) + 1
            out.append(p)
    return out


def build_eval_set(pairs: Sequence[EvalPair], settings: EvalSettings) -> EvalSet:
    """Games on the first `settings.games` pairs per domain; questions from every held-out record."""
    records = [(p.record, p.original) for p in pairs if p.record is not None]
    questions = vqa_questions(records, settings.vqa_per_type, settings.seed)
    return EvalSet(first_per_domain(pairs, settings.games), questions, settings.seed)
