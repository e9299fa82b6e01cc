"""The rules of one game: setup, turn order, who sees what, and recording what was said.

The rollout engine drives many games turn-synchronously:

    games = [new_game(...) for ...]
    for round_, seat in clue_turn_order(settings):
        requests = [clue_request(g, round_, seat) for g in games]
        ...generate one completion per request...
        record_clue(g, round_, seat, completion)            # for each game
    for g in games:
        requests = decision_requests(g)   # sample each request `n_samples` times
        record_votes(g, completions)       # flattened: request order, then sample order

Turns must be recorded in order; a call out of order is a programming error (ValueError).
Model output never raises: it is parsed into counted outcomes (visionzero.game.parsing).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from visionzero.game import prompts
from visionzero.game.parsing import parse_clue, parse_vote
from visionzero.game.records import OBSERVER, Game, Stage, Turn
from visionzero.settings.schema import GameSettings


@dataclass(frozen=True)
class ChatRequest:
    """One prompt for the generation backend, in Hugging Face multimodal chat format."""

    messages: list[dict[str, Any]]
    images: list[str]  # image references in the order they appear in `messages`
    game_id: str
    stage: Stage
    seat: int  # speaker or voter; OBSERVER (0) for the observer
    round: int  # clue round 1..R; 0 for decision prompts
    n_samples: int = 1  # completions to sample from this prompt


@dataclass(frozen=True)
class Completion:
    """A generated completion with the optional token-level data the update step needs."""

    text: str
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None


CompletionLike = str | Completion


# ---------------------------------------------------------------- images
def blank_ref(width: int, height: int) -> str:
    """The reference of a blank image of the given size (the rollout layer draws it)."""
    return f"blank:{int(width)}x{int(height)}"


def parse_blank_ref(ref: str) -> tuple[int, int] | None:
    """(width, height) of a "blank:WxH" reference; None for any other reference."""
    if not ref.startswith("blank:"):
        return None
    w, sep, h = ref[6:].partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise ValueError(f"bad blank image reference {ref!r}; expected blank:<W>x<H>")
    return int(w), int(h)


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image  # only needed when a blank spy image has no known size

    with Image.open(path) as im:
        return im.size


# ---------------------------------------------------------------- setup
def new_game(
    pair_id: str,
    domain: str,
    original: str,
    edited: str,
    settings: GameSettings,
    seed: int,
    *,
    image_size: tuple[int, int] | None = None,
    game_id: str | None = None,
    hint: str | None = None,
    spy_seat: int | None = None,
) -> Game:
    """Set up a game on one image pair; the spy's seat is uniform, drawn from `seed`
    unless `spy_seat` gives it (a stratified draw over several games: `balanced_seats`).

    `image_size` (width, height) sizes the blank spy image (`spy_image: blank`); without
    it the original image's header is read. `hint`: what differs in the spy's image (the
    pair's change log, `pair_hint`); None = the domain's general sentence.
    """
    if domain not in prompts.DOMAIN_TEXT:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(prompts.DOMAINS)}")
    if spy_seat is None:
        spy_seat = random.Random(seed).randint(1, settings.n_players)
    elif not 1 <= spy_seat <= settings.n_players:
        raise ValueError(f"spy_seat {spy_seat} is outside the seats 1..{settings.n_players}")
    if settings.spy_image == "blank":
        spy_image = blank_ref(*(image_size or _image_size(original)))
    else:
        spy_image = edited
    return Game(
        game_id=game_id if game_id is not None else f"{pair_id}:{seed}",
        pair_id=pair_id,
        domain=domain,
        seed=seed,
        spy_seat=spy_seat,
        original=original,
        edited=edited,
        spy_image=spy_image,
        settings=settings.model_copy(deep=True),
        hint=hint,
    )


def clue_turn_order(settings: GameSettings) -> list[tuple[int, int]]:
    """(round, seat) of every clue turn: rounds 1..R, seats 1..n within each round."""
    return [(r, s) for r in range(1, settings.rounds + 1) for s in range(1, settings.n_players + 1)]


def next_clue_turn(game: Game) -> tuple[int, int] | None:
    """The (round, seat) that speaks next; None once the clue stage is over."""
    order = clue_turn_order(game.settings)
    done = len(game.clue_turns())
    return order[done] if done < len(order) else None


def _expect_turn(game: Game, round_: int, seat: int) -> None:
    expected = next_clue_turn(game)
    if expected != (round_, seat):
        raise ValueError(f"game {game.game_id}: clue turn {(round_, seat)} requested, next is {expected}")


# ---------------------------------------------------------------- clue stage
def clue_request(game: Game, round_: int, seat: int) -> ChatRequest:
    """The prompt of the next clue turn; it must be (round_, seat)."""
    _expect_turn(game, round_, seat)
    messages = prompts.clue_messages(game, round_, seat, game.clue_turns())
    return ChatRequest(messages, [game.image_for(seat)], game.game_id, "clue", seat, round_)


def _turn(game: Game, stage: Stage, round_: int, seat: int, sample: int, c: CompletionLike) -> Turn:
    c = c if isinstance(c, Completion) else Completion(str(c))
    image = game.original if seat == OBSERVER else game.image_for(seat)
    return Turn(
        stage, round_, seat, sample, image, c.text,
        prompt_ids=c.prompt_ids, completion_ids=c.completion_ids, logprobs=c.logprobs,
    )  # fmt: skip


def record_clue(game: Game, round_: int, seat: int, completion: CompletionLike) -> Turn:
    """Parse and store the next clue turn; returns the stored turn."""
    _expect_turn(game, round_, seat)
    turn = _turn(game, "clue", round_, seat, 0, completion)
    turn.clue = parse_clue(turn.text)
    game.turns.append(turn)
    return turn


# ---------------------------------------------------------------- decision stage
def voters(game: Game) -> list[int]:
    """Who votes: [OBSERVER] (observer mode) or every civilian seat (civilians mode)."""
    return [OBSERVER] if game.settings.voting == "observer" else game.civilians


def decision_requests(game: Game) -> list[ChatRequest]:
    """Vote prompts once the clue stage is over.

    observer: one prompt (original image + all clues) to sample G = group_size times.
    civilians: one prompt per civilian from its own view, sampled once; the spy never votes.
    """
    if next_clue_turn(game) is not None:
        raise ValueError(f"game {game.game_id}: decision requested before the clue stage ended")
    if game.settings.voting == "observer":
        msgs = prompts.observer_messages(game)
        return [ChatRequest(msgs, [game.original], game.game_id, "decision", OBSERVER, 0, game.settings.group_size)]
    return [
        ChatRequest(prompts.voter_messages(game, s), [game.image_for(s)], game.game_id, "decision", s, 0)
        for s in game.civilians
    ]


def record_vote(game: Game, seat: int, sample: int, completion: CompletionLike) -> Turn:
    """Parse and store one vote of `seat` (OBSERVER in observer mode)."""
    if seat not in voters(game):
        raise ValueError(f"game {game.game_id}: seat {seat} does not vote")
    turn = _turn(game, "decision", 0, seat, sample, completion)
    turn.vote = parse_vote(turn.text, game.n_players)
    game.turns.append(turn)
    return turn


def record_votes(game: Game, completions: Sequence[CompletionLike]) -> list[Turn]:
    """Store all votes of a game: completions in `decision_requests` order, samples within."""
    requests = decision_requests(game)
    slots = [(r.seat, k) for r in requests for k in range(r.n_samples)]
    if len(completions) != len(slots):
        raise ValueError(f"game {game.game_id}: expected {len(slots)} vote completions, got {len(completions)}")
    if game.decision_turns:
        raise ValueError(f"game {game.game_id}: votes already recorded")
    return [record_vote(game, seat, k, c) for (seat, k), c in zip(slots, completions)]
