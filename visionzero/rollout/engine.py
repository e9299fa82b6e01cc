"""The batched self-play engine: B games played together, turn-synchronously.

For each clue turn (round r, seat s) the engine sends the B prompts of that turn to the
policy as ONE batch, records the B clues, and moves on; then all B x G observer votes (or
the civilians' votes) go out as one more batch. The official code plays one player of one
game at a time; batching turns is what makes rollouts fast on CPU and GPU alike.

The engine knows nothing about the model: it needs a `Policy` (rollout/types.py).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from visionzero.game import (
    ChatRequest,
    Completion,
    Game,
    clue_request,
    clue_turn_order,
    decision_requests,
    new_game,
    record_clue,
    record_votes,
)
from visionzero.rollout.types import Completion as PolicyCompletion
from visionzero.rollout.types import Policy, Sampling
from visionzero.settings.schema import GameSettings


@dataclass
class RolloutStats:
    games: int = 0
    generations: int = 0  # completions produced
    generated_tokens: int = 0
    unfinished: int = 0  # completions cut at max_new_tokens
    seconds: float = 0.0
    seconds_by_stage: dict[str, float] = field(default_factory=lambda: {"clue": 0.0, "decision": 0.0})

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self, prefix: str = "rollout/") -> dict[str, float]:
        data = {
            "games": self.games, "generations": self.generations, "generated_tokens": self.generated_tokens,
            "unfinished": self.unfinished, "seconds": self.seconds, "tokens_per_s": self.tokens_per_s,
            "clue_seconds": self.seconds_by_stage["clue"], "decision_seconds": self.seconds_by_stage["decision"],
        }  # fmt: skip
        return {f"{prefix}{k}": float(v) for k, v in data.items()}


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any labels (Python's hash() is salted per process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _to_game(c: PolicyCompletion) -> Completion:
    return Completion(c.text, c.prompt_token_ids, c.token_ids, c.logprobs)


class GameEngine:
    """Plays batches of games with one policy (self-play: every seat and the observer)."""

    def __init__(self, policy: Policy, settings: GameSettings, on_turn: Callable[[str], None] | None = None):
        self.policy = policy
        self.settings = settings
        self.on_turn = on_turn  # progress hook, called after every batched turn

    def _generate(self, requests: Sequence[ChatRequest], sampling: Sampling, seed: int, stats: RolloutStats):
        out = self.policy.generate(requests, sampling, seed=seed)
        for samples in out:
            for c in samples:
                stats.generations += 1
                stats.generated_tokens += len(c.token_ids)
                stats.unfinished += not c.finished
        return out

    def play(self, games: Sequence[Game], seed: int) -> RolloutStats:
        """Play every game to the end (clue rounds, then votes), recording into the games."""
        stats = RolloutStats(games=len(games))
        start = time.perf_counter()
        clue = Sampling.from_settings(self.settings.clue)
        for round_, seat in clue_turn_order(self.settings):
            t0 = time.perf_counter()
            requests = [clue_request(g, round_, seat) for g in games]
            out = self._generate(requests, clue, derive_seed(seed, "clue", round_, seat), stats)
            for game, (completion,) in zip(games, out):
                record_clue(game, round_, seat, _to_game(completion))
            stats.seconds_by_stage["clue"] += time.perf_counter() - t0
            if self.on_turn:
                self.on_turn(f"round {round_} seat {seat}")
        t0 = time.perf_counter()
        per_game = [decision_requests(g) for g in games]
        flat = [r for reqs in per_game for r in reqs]
        # One batch per distinct sample count (observer: G each; civilians: 1 each).
        results: dict[int, list[PolicyCompletion]] = {}
        for n in sorted({r.n_samples for r in flat}):
            chosen = [i for i, r in enumerate(flat) if r.n_samples == n]
            decision = Sampling.from_settings(self.settings.decision, n=n)
            copies = n if decision.greedy else 1  # greedy samples are identical: decode one, copy it
            decision = replace(decision, n=n // copies)
            out = self._generate([flat[i] for i in chosen], decision, derive_seed(seed, "decision", n), stats)
            results.update(zip(chosen, (samples * copies for samples in out)))
        index = 0
        for game, reqs in zip(games, per_game):
            completions = []
            for _ in reqs:
                completions.extend(_to_game(c) for c in results[index])
                index += 1
            record_votes(game, completions)
        stats.seconds_by_stage["decision"] += time.perf_counter() - t0
        if self.on_turn:
            self.on_turn("votes")
        stats.seconds = time.perf_counter() - start
        return stats


def balanced_seat(seed: int, k: int, n_players: int) -> int:
    """The spy's seat of game k under a stratified draw: games are taken in blocks of
    n_players and each block seats its spies by one random permutation, so every seat holds
    the spy equally often in each block while each game's seat stays uniform."""
    block = list(range(1, n_players + 1))
    random.Random(derive_seed(seed, "seats", k // n_players)).shuffle(block)
    return block[k % n_players]


def setup_games(
    pairs: Sequence, settings: GameSettings, seed: int, first_index: int = 0, *, balanced_seats: bool = False
) -> list[Game]:
    """One game per pair. `pairs` items have id, domain and original/edited image paths.

    Game k (counting from `first_index`) gets seed derive_seed(seed, "game", k), so the same
    data position always gives the same spy seat, whatever the batch size. `balanced_seats`
    draws the seats by `balanced_seat` instead of independently: a batch of a multiple of
    n_players games starting at a multiple of n_players then has as many spies in every seat
    (a vote gradient's push towards one seat cancels, docs/learning.md section 6).
    """
    games = []
    for k, pair in enumerate(pairs, start=first_index):
        game_seed = derive_seed(seed, "game", k)
        seat = balanced_seat(seed, k, settings.n_players) if balanced_seats else None
        games.append(
            new_game(
                pair.id, pair.domain, str(pair.original), str(pair.edited), settings, game_seed,
                game_id=f"g{k:06d}-{pair.id}", hint=getattr(pair, "hint", None), spy_seat=seat,
            )  # fmt: skip
        )
    return games
