"""Prompt texts for clue and vote turns, as Hugging Face multimodal chat messages.

Wording is ours, following METHOD.md section 2: a shared rules message, then one user
message with the player's image and its role-specific task. Prompts are compact because
tiny models with small contexts play them on CPU. Visibility is decided here: a prompt
shows every earlier clue's text, and reasoning only from the addressed seat's own turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visionzero.game.records import Game, Turn

Message = dict[str, Any]


@dataclass(frozen=True)
class DomainText:
    """Domain-specific words: what the image is, what clues describe, what the spy's differs in."""

    picture: str
    focus: str
    change: str  # the spy hint, completing "In the spy's image, ..."
    example: str  # one example clue


DOMAIN_TEXT: dict[str, DomainText] = {
    "clevr": DomainText(
        picture="image",
        focus="the objects: colour, shape, size, material and position",
        change="two objects were replaced by other objects at the same positions",
        example="A small red metal cube is left of a large green sphere.",
    ),
    "chart": DomainText(
        picture="chart",
        focus="the chart: its type, labels, values, colours and trends",
        change="two attributes of the chart (such as values, labels or colours) were swapped",
        example="The tallest bar is the blue one labelled March.",
    ),
    "photo": DomainText(
        picture="photo",
        focus="the scene: its objects, their colours, parts and positions",
        change="some objects or parts of the scene differ",
        example="A white mug stands to the right of the laptop.",
    ),
}
DOMAINS = tuple(DOMAIN_TEXT)

FIRST_SPEAKER_NOTE = "No clue has been given yet: you are the first to speak."
_COUNT = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def clevr_change_hint(changes: list[dict[str, Any]]) -> str | None:
    """The spy hint a CLEVR pair's change log supports, e.g. "one object has a different
    colour, at the same position"; None when the log says nothing (the domain default)."""
    if not changes:
        return None
    n = len(changes)
    count = _COUNT.get(n, str(n))
    shape = any(c.get("before", {}).get("shape") != c.get("after", {}).get("shape") for c in changes)
    where = "at the same position" + ("s" if n > 1 else "")
    if shape:
        what = "object was" if n == 1 else "objects were"
        return f"{count} {what} replaced by {'an object' if n == 1 else 'objects'} of another colour and shape, {where}"
    return f"{count} {'object has' if n == 1 else 'objects have'} a different colour, {where}"


def pair_hint(domain: str, changes: list[dict[str, Any]] | None) -> str | None:
    """The spy hint of a pair from its manifest change log (CLEVR only; None = domain default)."""
    return clevr_change_hint(changes or []) if domain == "clevr" else None


def spy_change(game: Game) -> str:
    """What differs in the spy's image: the pair's own hint, else the domain's sentence."""
    return game.hint or DOMAIN_TEXT[game.domain].change


def _is_blank(ref: str) -> bool:
    return ref.startswith("blank:")


def rules_text(game: Game) -> str:
    """The rules every prompt of a game shares (the system message)."""
    n, r = game.n_players, game.settings.rounds
    rounds = f"{r} round" + ("s" if r != 1 else "")
    return (
        f'"Who is the spy?" is played by {n} players, numbered 1 to {n}. '
        f"{n - 1} players, the civilians, get the same {DOMAIN_TEXT[game.domain].picture}; "
        "one player, the spy, gets a different one. Nobody sees another player's image. "
        f"For {rounds}, players speak in turn, each giving a one-sentence clue about "
        "their own image. Then a vote names the spy: the civilians win if the spy gets "
        "the most votes, the spy wins otherwise."
    )


def _line(turn: Turn, viewer: int | None) -> str:
    who = f"Player {turn.seat}" + (" (you)" if turn.seat == viewer else "")
    text = turn.clue.text if turn.clue else ""
    return f"{who}: {text}"


def transcript(turns: list[Turn], viewer: int | None = None) -> str:
    """Clue texts grouped by round; never any reasoning. `viewer` marks its own lines."""
    lines: list[str] = []
    current = None
    for t in turns:
        if t.round != current:
            current = t.round
            lines.append(f"Round {t.round}:")
        lines.append(_line(t, viewer))
    return "\n".join(lines)


def _own_notes(turns: list[Turn]) -> str:
    """A seat's own earlier reasoning, which only that seat is ever shown."""
    body = "\n".join(f"Round {t.round}: {(t.clue.reasoning if t.clue else '') or '(none)'}" for t in turns)
    return "Your own private reasoning from earlier turns (only you see it):\n" + body


def _role_task(game: Game, seat: int) -> str:
    d = DOMAIN_TEXT[game.domain]
    if game.role(seat) == "civilian":
        return (
            f"Your role: NOT SPY. Your {d.picture} is the one most players see. Name one "
            "specific detail of it that no earlier clue mentions, so the spy cannot copy it."
        )
    if _is_blank(game.image_for(seat)):
        return (
            "Your role: SPY. Your image is blank: you cannot see what the others see. "
            f"Guess from the clues what their {d.picture} shows and give a plausible clue "
            "that blends in."
        )
    return (
        f"Your role: SPY. Your {d.picture} differs from the others': {spy_change(game)}. "
        "Blend in: describe what the others likely see and do not reveal a difference."
    )


def _user(image: str, text: str) -> Message:
    return {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}


def _system(game: Game) -> Message:
    return {"role": "system", "content": [{"type": "text", "text": rules_text(game)}]}


def clue_messages(game: Game, round_: int, seat: int, history: list[Turn]) -> list[Message]:
    """The clue prompt of `seat` in `round_`, given the clue turns spoken before it."""
    d = DOMAIN_TEXT[game.domain]
    parts = [
        f"You are Player {seat}. This is round {round_} of {game.settings.rounds}.",
        _role_task(game, seat),
        f"Clues describe {d.focus}. Think step by step in private first, then give your "
        f"clue as one sentence inside \\boxed{{}}, e.g. \\boxed{{{d.example}}}",
    ]
    if history:
        parts.append("Clues so far (other players' reasoning is hidden):\n" + transcript(history, seat))
    else:
        parts.append(FIRST_SPEAKER_NOTE)
    own = [t for t in history if t.seat == seat]
    if own:
        parts.append(_own_notes(own))
    return [_system(game), _user(game.image_for(seat), "\n\n".join(parts))]


def _vote_instruction(n: int) -> str:
    return (
        "Think step by step, then give the spy's player number inside \\boxed{}, e.g. "
        f"\\boxed{{{min(2, n)}}}. If you cannot tell, answer \\boxed{{N/A}}."
    )


def _spy_image_note(game: Game) -> str:
    d = DOMAIN_TEXT[game.domain]
    if _is_blank(game.spy_image):
        return "The spy was shown a blank image."
    return f"In the spy's {d.picture}, {spy_change(game)}."


def observer_messages(game: Game) -> list[Message]:
    """The third-person decision prompt: the ORIGINAL image and every clue."""
    d = DOMAIN_TEXT[game.domain]
    text = "\n\n".join(
        [
            f"You judge this game. The image is the ORIGINAL {d.picture}, the one the "
            f"civilians see. {_spy_image_note(game)} The spy tries to blend in; civilians "
            "name specific details. Look for clues that contradict this image or the "
            "others, and for vague or evasive clues.",
            "All clues:\n" + transcript(game.clue_turns()),
            _vote_instruction(game.n_players),
        ]
    )
    return [_system(game), _user(game.original, text)]


def voter_messages(game: Game, seat: int) -> list[Message]:
    """A civilian's own decision prompt: its image, every clue, its own reasoning."""
    d = DOMAIN_TEXT[game.domain]
    parts = [
        f"You are Player {seat}. Your role: NOT SPY. The clue rounds are over; vote for the "
        f"spy. {_spy_image_note(game)} Compare every clue with your own {d.picture}.",
        "All clues:\n" + transcript(game.clue_turns(), seat),
    ]
    own = game.clue_turns(seat)
    if own:
        parts.append(_own_notes(own))
    parts.append(_vote_instruction(game.n_players))
    return [_system(game), _user(game.image_for(seat), "\n\n".join(parts))]


def render_plain(messages: list[Message]) -> str:
    """A model-free rendering of chat messages (tests, logs): images become `<image>`."""
    out = []
    for m in messages:
        body = "".join(
            "<image>" if c.get("type") == "image" else str(c.get("text", "")) for c in m["content"]
        )
        out.append(f"<|{m['role']}|>\n{body}")
    return "\n".join(out) + "\n<|assistant|>\n"
