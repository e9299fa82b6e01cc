"""Typed game records and their JSON Lines form.

A `Game` is both the live state the rules advance and the record the reward and update
steps read: who the spy is, every turn with its stage, round, seat and sample index, the
raw completion, the parsed clue or vote, and (filled by the rollout engine) the prompt and
completion token ids and the behaviour log-probs. One game is one JSON line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from visionzero.fileio import write_text_atomic
from visionzero.game.parsing import ParsedClue, ParsedVote
from visionzero.settings.schema import GameSettings

Stage = Literal["clue", "decision"]
Role = Literal["spy", "civilian"]
OBSERVER = 0  # the seat number of the third-person observer voter
RECORD_VERSION = 1


@dataclass
class Turn:
    """One sampled completion of one prompt."""

    stage: Stage
    round: int  # clue round 1..R; 0 for decision turns
    seat: int  # speaker (clue) or voter (decision); OBSERVER for the observer
    sample: int  # index among the samples of the same prompt (0 for clue turns)
    image: str  # image reference the prompt showed
    text: str  # the raw completion
    clue: ParsedClue | None = None
    vote: ParsedVote | None = None
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None  # behaviour log-probs, one per completion token

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Turn":
        d = dict(d)
        d["clue"] = ParsedClue(**d["clue"]) if d.get("clue") else None
        d["vote"] = ParsedVote(**d["vote"]) if d.get("vote") else None
        return cls(**d)


@dataclass
class Game:
    """One game of "Who is the spy?": fixed setup plus the turns played so far."""

    game_id: str
    pair_id: str
    domain: str
    seed: int
    spy_seat: int
    original: str  # image reference of the civilians' picture
    edited: str  # image reference of the edited picture
    spy_image: str  # what the spy is shown: `edited` or a "blank:WxH" reference
    settings: GameSettings
    turns: list[Turn] = field(default_factory=list)
    hint: str | None = None  # what differs in the spy's image, from the pair's change log

    # ---------------------------------------------------------------- setup
    @property
    def n_players(self) -> int:
        return self.settings.n_players

    @property
    def seats(self) -> list[int]:
        return list(range(1, self.n_players + 1))

    @property
    def civilians(self) -> list[int]:
        return [s for s in self.seats if s != self.spy_seat]

    def role(self, seat: int) -> Role:
        return "spy" if seat == self.spy_seat else "civilian"

    def image_for(self, seat: int) -> str:
        """The image a seat sees; the observer sees the original."""
        return self.spy_image if seat == self.spy_seat else self.original

    # ---------------------------------------------------------------- turns
    def clue_turns(self, seat: int | None = None) -> list[Turn]:
        """Clue turns in speaking order, optionally of one seat."""
        return [t for t in self.turns if t.stage == "clue" and seat in (None, t.seat)]

    @property
    def decision_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.stage == "decision"]

    @property
    def votes(self) -> list[ParsedVote]:
        return [t.vote for t in self.decision_turns if t.vote is not None]

    # ---------------------------------------------------------------- vote summary
    @property
    def vote_counts(self) -> dict[int, int]:
        """Valid votes received per seat (every seat listed; N/A and invalid dropped)."""
        counts = {s: 0 for s in self.seats}
        for v in self.votes:
            if v.kind == "seat" and v.seat in counts:
                counts[v.seat] += 1
        return counts

    @property
    def na_count(self) -> int:
        return sum(v.kind == "na" for v in self.votes)

    @property
    def invalid_count(self) -> int:
        return sum(v.kind == "invalid" for v in self.votes)

    @property
    def accuracy(self) -> float:
        """Share of all votes (N/A and invalid included) that name the spy; 0 if none."""
        votes = self.votes
        return self.vote_counts[self.spy_seat] / len(votes) if votes else 0.0

    @property
    def spy_identified(self) -> bool:
        """True when the spy got strictly more valid votes than every other seat."""
        counts = self.vote_counts
        top = counts.pop(self.spy_seat)
        return top > 0 and all(top > c for c in counts.values())

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "game_id": self.game_id,
            "pair_id": self.pair_id,
            "domain": self.domain,
            "seed": self.seed,
            "spy_seat": self.spy_seat,
            "original": self.original,
            "edited": self.edited,
            "spy_image": self.spy_image,
            "settings": self.settings.model_dump(mode="json"),
            "turns": [t.to_dict() for t in self.turns],
            "hint": self.hint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Game":
        d = dict(d)
        version = d.pop("version", None)
        if version != RECORD_VERSION:
            raise ValueError(f"unsupported game record version {version!r}")
        d["settings"] = GameSettings.model_validate(d["settings"])
        d["turns"] = [Turn.from_dict(t) for t in d["turns"]]
        return cls(**d)


def write_records(path: str | Path, games: Iterable[Game]) -> Path:
    """Write one JSON line per game, atomically (a crash leaves the old file intact).

    Keys are sorted and non-ASCII is escaped, so the same games give the same bytes and
    any string a model emits (lone surrogates included) survives the round trip.
    """
    lines = (json.dumps(game.to_dict(), sort_keys=True, separators=(",", ":")) + "\n" for game in games)
    return write_text_atomic(path, "".join(lines))


def read_records(path: str | Path) -> list[Game]:
    """Read games written by `write_records`; a bad line raises one ValueError naming it."""
    games = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                games.append(Game.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                msg = " ".join(str(exc).split())[:200]
                raise ValueError(f"{path}:{lineno}: not a game record ({msg})") from None
    return games
