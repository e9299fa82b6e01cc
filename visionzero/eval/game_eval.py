"""Held-out game evaluation: one model plays every seat and votes; how well do the votes find the spy?

`game_metrics` is pure (it reads finished game records); `play_selfplay` plays the games.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from visionzero.base.examples import color_of
from visionzero.game import Game
from visionzero.rl.stats import mean
from visionzero.rollout.engine import GameEngine, RolloutStats, derive_seed, setup_games
from visionzero.rollout.types import Policy
from visionzero.settings.schema import CLEVR_COLORS, GameSettings


def _group_metrics(games: Sequence[Game]) -> dict[str, float]:
    votes = [v for g in games for v in g.votes]
    correct = sum(g.vote_counts[g.spy_seat] for g in games)
    clues = [t for g in games for t in g.clue_turns()]
    vote_turns = [t for g in games for t in g.decision_turns]
    n_votes = len(votes)
    return {
        "games": float(len(games)),
        "votes": float(n_votes),
        # majority: the spy got strictly more valid votes than any other seat
        "spy_identified": mean([float(g.spy_identified) for g in games]),
        # per sample: share of all votes (N/A and invalid included) naming the spy
        "vote_accuracy": correct / n_votes if n_votes else 0.0,
        "na_rate": sum(v.kind == "na" for v in votes) / n_votes if n_votes else 0.0,
        "invalid_rate": sum(v.kind == "invalid" for v in votes) / n_votes if n_votes else 0.0,
        "vote_format_rate": mean([float(v.format_ok) for v in votes]),
        "clue_valid_rate": mean([float(t.clue.valid) for t in clues if t.clue]),
        # lengths in generated tokens (turns without token ids, e.g. scripted ones, are skipped)
        "clue_tokens": mean([float(len(t.completion_ids)) for t in clues if t.completion_ids is not None]),
        "vote_tokens": mean([float(len(t.completion_ids)) for t in vote_turns if t.completion_ids is not None]),
        "clue_chars": mean([float(len(t.clue.text)) for t in clues if t.clue and t.clue.valid]),
        **seat_metrics(games),
    }


def seat_metrics(games: Sequence[Game]) -> dict[str, float]:
    """Guards against votes piling onto one seat passing as skill.

    `spy_seat<k>/vote_accuracy`: vote accuracy on the games whose spy sits in seat k;
    `vote_share/seat<k>`: share of valid votes naming seat k; `best_constant_seat_accuracy`:
    the accuracy (per vote, and also of the majority) of the best policy that always names
    one seat, on these same games; `accuracy_over_constant`: vote accuracy minus it.
    """
    if not games:
        return {}
    seats = range(1, max(g.n_players for g in games) + 1)
    out: dict[str, float] = {}
    valid = [v.seat for g in games for v in g.votes if v.kind == "seat"]
    for k in seats:
        mine = [g for g in games if g.spy_seat == k]
        votes = sum(len(g.votes) for g in mine)
        out[f"spy_seat{k}/vote_accuracy"] = sum(g.vote_counts[k] for g in mine) / votes if votes else 0.0
        out[f"vote_share/seat{k}"] = valid.count(k) / len(valid) if valid else 0.0
    best = max(sum(g.spy_seat == k for g in games) for k in seats) / len(games)
    n_votes = sum(len(g.votes) for g in games)
    accuracy = sum(g.vote_counts[g.spy_seat] for g in games) / n_votes if n_votes else 0.0
    out["best_constant_seat_accuracy"] = best
    out["accuracy_over_constant"] = accuracy - best
    return out


def game_metrics(games: Sequence[Game], prefix: str = "game/") -> dict[str, float]:
    """Vote and clue statistics over all games (`game/<name>`) and per domain (`game/<domain>/<name>`)."""
    metrics = {f"{prefix}{k}": v for k, v in _group_metrics(games).items()}
    by_domain: dict[str, list[Game]] = defaultdict(list)
    for g in games:
        by_domain[g.domain].append(g)
    for domain, group in sorted(by_domain.items()):
        metrics.update({f"{prefix}{domain}/{k}": v for k, v in _group_metrics(group).items()})
    return metrics


def clue_scene_metrics(games: Sequence[Game], scenes: dict[str, set[str]], colors: Sequence[str] = CLEVR_COLORS,
                       prefix: str = "game/") -> dict[str, float]:
    """What the clues give away, judged from the scene graphs (CLEVR pairs): the clue stage's
    effect measured directly, whatever the votes do.

    `scenes`: pair id -> the colours of its ORIGINAL image. A clue is true when the colour it
    names is in the original. `spy_identifiable`: games where a perfect colour checker flags
    exactly the spy (a false clue from the spy, only true ones from the civilians);
    `spy_clue_false_rate` / `civilian_clue_true_rate`: over valid clues naming a colour.
    Self-play pushes these apart: civilians gain by true, specific clues; the spy by blending in.
    """
    judged = [g for g in games if g.pair_id in scenes]
    if not judged:
        return {}
    identifiable, spy_false, civ_true = [], [], []
    vocabulary = list(colors)
    for g in judged:
        original = scenes[g.pair_id]
        flagged = set()
        for t in g.clue_turns():
            color = color_of(t.clue.text, vocabulary) if t.clue and t.clue.valid else None
            if color is None:
                continue
            true = color in original
            if t.seat == g.spy_seat:
                spy_false.append(float(not true))
            else:
                civ_true.append(float(true))
            if not true:
                flagged.add(t.seat)
        identifiable.append(float(flagged == {g.spy_seat}))
    return {
        f"{prefix}spy_identifiable": mean(identifiable),
        f"{prefix}spy_clue_false_rate": mean(spy_false),
        f"{prefix}civilian_clue_true_rate": mean(civ_true),
    }


def scene_colors(pairs: Sequence) -> dict[str, set[str]]:
    """pair id -> colours of the original scene, for the pairs whose record has a scene graph."""
    return {p.id: {o["color"] for o in p.record.scene} for p in pairs if getattr(p, "record", None) is not None and p.record.scene}


def play_selfplay(
    policy: Policy,
    pairs: Sequence,
    settings: GameSettings,
    seed: int,
    on_turn: Callable[[str], None] | None = None,
) -> tuple[list[Game], RolloutStats]:
    """One game per pair with `policy` in every seat and as the voter(s).

    Spy seats come from `seed` and the pair's position, sampling from `seed` alone, so the
    same pairs and seed give every model the same setup.
    """
    games = setup_games(pairs, settings, seed)
    stats = GameEngine(policy, settings, on_turn=on_turn).play(games, seed=derive_seed(seed, "selfplay"))
    return games, stats
