"""Supervised examples for the base stage, built ONLY from the generators' records.

The embedded tiny VLM starts from random weights, so it cannot play the game at all. The
base stage stands in for the pretraining a real VLM brings: it teaches three skills, each
computed from CLEVR scene graphs, never from game outcomes and never who the spy is:

- clue:     the real clue prompt of a game (any seat, any round, earlier clues made from
            the scene graphs) -> "I see a red cube. \\boxed{There is a red cube.}" naming a
            random object of the speaker's OWN image (the spy's is the edited one);
- judge:    an image and one clue -> "yes" or "no": is the clue true of this image;
- observer: the real observer prompt (ORIGINAL image, every clue) -> one check per clue,
            "Player 3: red no.", true against the original image, then a RANDOM vote in
            the box. The base learns the output format and the per-clue reasoning; which
            seat to vote for is left to reinforcement learning (Iterative-SPO), apart
            from a weak prior taught last (`base.vote_prior`, see observer_example).

Pure Python + numpy/Pillow (no torch): examples hold PIL images; the trainer makes tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from visionzero.game import (
    Game,
    clue_request,
    clue_turn_order,
    decision_requests,
    new_game,
    record_clue,
)
from visionzero.game.parsing import parse_clue
from visionzero.game.prompts import clevr_change_hint
from visionzero.settings.schema import BaseStageSettings, ClevrSettings, GameSettings

Kind = Literal["clue", "judge", "observer"]
KINDS: tuple[Kind, ...] = ("clue", "judge", "observer")
ORIGINAL, EDITED = "mem:original", "mem:edited"  # image refs inside example games

JUDGE_QUESTION = "Is this clue true of your image? Answer yes or no."


def clue_text(color: str, shape: str) -> str:
    """A clue turn's full completion: short reasoning, then the clue in the box."""
    return f"I see a {color} {shape}. \\boxed{{There is a {color} {shape}.}}"


def judge_prompt(clue: str) -> str:
    return f"Clue: {clue}\n{JUDGE_QUESTION}"


def check_line(seat: int, color: str | None, consistent: bool) -> str:
    """One observer check: "Player 2: red yes." (None: the clue names no colour)."""
    return f"Player {seat}: none." if color is None else f"Player {seat}: {color} {'yes' if consistent else 'no'}."


@dataclass
class Example:
    kind: Kind
    messages: list[dict[str, Any]]  # chat messages; image parts hold PIL images
    target: str  # the assistant reply to learn
    truth: dict[str, Any] = field(default_factory=dict)  # what skills are scored against


@dataclass(frozen=True)
class Scene:
    """One pair's images and the colours present in each (from the scene graphs)."""

    original: Image.Image
    edited: Image.Image
    objects: list[dict[str, Any]]
    edited_objects: list[dict[str, Any]]
    changes: list[dict[str, Any]]

    def colors(self, which: str) -> set[str]:
        objs = self.objects if which == ORIGINAL else self.edited_objects
        return {o["color"] for o in objs}


def make_scene(rng: np.random.Generator, clevr: ClevrSettings, size: int, single: bool = False) -> Scene:
    """A CLEVR pair from the generator; `single`: one object (the curriculum's easy scenes)."""
    from visionzero.pairs.clevr import make_clevr_pair

    cfg = clevr.model_copy(update={"min_objects": 1, "max_objects": 1, "n_edits": 1}) if single else clevr
    a, b, fields = make_clevr_pair(rng, cfg, size)
    return Scene(Image.fromarray(a), Image.fromarray(b), fields["scene"], fields["edited_scene"], fields["changes"])


def color_of(clue: str, colors: list[str]) -> str | None:
    """The first colour word of the vocabulary named in a clue (None if none)."""
    words = re.findall(r"[a-z]+", clue.lower())
    return next((w for w in words if w in colors), None)


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def _scene_clue(rng: np.random.Generator, scene: Scene, ref: str, clevr: ClevrSettings, noise: float) -> str:
    """A clue from the scene graph of the image `ref`; with prob `noise` a random colour."""
    obj = _pick(rng, scene.objects if ref == ORIGINAL else scene.edited_objects)
    color = _pick(rng, clevr.colors) if rng.random() < noise else obj["color"]
    return clue_text(color, obj["shape"])


def _with_images(messages: list[dict[str, Any]], scene: Scene) -> list[dict[str, Any]]:
    """Replace the example game's image refs by the scene's images (copying the messages)."""
    images = {ORIGINAL: scene.original, EDITED: scene.edited}
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [
                {**p, "image": images[p["image"]]} if p.get("type") == "image" and p.get("image") in images else p
                for p in content
            ]
        out.append({**m, "content": content})
    return out


def _game(rng: np.random.Generator, game: GameSettings, scene: Scene) -> Game:
    hint = clevr_change_hint(scene.changes)  # the same hint a game on this pair would give
    return new_game("base", "clevr", ORIGINAL, EDITED, game, int(rng.integers(2**31)), image_size=(1, 1), hint=hint)


def _play_clues(rng, g: Game, scene: Scene, clevr: ClevrSettings, noise: float, turns: int) -> None:
    for round_, seat in clue_turn_order(g.settings)[:turns]:
        record_clue(g, round_, seat, _scene_clue(rng, scene, g.image_for(seat), clevr, noise))


def clue_example(rng, scene: Scene, clevr: ClevrSettings, game: GameSettings, noise: float) -> Example:
    g = _game(rng, game, scene)
    order = clue_turn_order(game)
    k = int(rng.integers(len(order)))
    _play_clues(rng, g, scene, clevr, noise, k)
    round_, seat = order[k]
    request = clue_request(g, round_, seat)
    own = g.image_for(seat)
    obj = _pick(rng, scene.objects if own == ORIGINAL else scene.edited_objects)
    return Example(
        "clue", _with_images(request.messages, scene), clue_text(obj["color"], obj["shape"]),
        {"colors": sorted(scene.colors(own))},
    )  # fmt: skip


def judge_example(rng, scene: Scene, clevr: ClevrSettings) -> Example:
    present = sorted(scene.colors(ORIGINAL))
    absent = [c for c in clevr.colors if c not in present]
    consistent = not absent or rng.random() < 0.5
    color = _pick(rng, present if consistent else absent)
    shape = _pick(rng, clevr.shapes)
    clue = f"There is a {color} {shape}."
    messages = [{"role": "user", "content": [{"type": "image", "image": scene.original}, {"type": "text", "text": judge_prompt(clue)}]}]
    return Example("judge", messages, "yes" if consistent else "no", {"consistent": consistent})


SUMMARY = "Odd:"  # opens the observer's optional summary line (base.observer_summary)


def summary_line(flagged: int | None) -> str:
    """The reasoning's last line: the one seat the checks flag, "Odd: 3.", else "Odd: none."."""
    return f"{SUMMARY} {flagged if flagged is not None else 'none'}."


def observer_target(g: Game, original_colors: set[str], colors: list[str], vote: str,
                    summary: bool = False) -> tuple[str, list[bool | None]]:
    """The observer's reply: one check per clue in speaking order, optionally the summary
    line (what the checks say, not who the spy is: it copies them), then `\\boxed{vote}`."""
    truth = observer_checks(g, original_colors, colors)
    lines = [check_line(t.seat, _color(t, colors), bool(ok)) for t, ok in zip(g.clue_turns(), truth)]
    if summary:
        lines.append(summary_line(flagged_seat([t.seat for t in g.clue_turns()], truth)))
    return " ".join(lines) + f" \\boxed{{{vote}}}", truth


def _color(turn, colors: list[str]) -> str | None:
    return color_of(turn.clue.text, colors) if turn.clue and turn.clue.valid else None


def observer_checks(g: Game, original_colors: set[str], colors: list[str]) -> list[bool | None]:
    """Per clue in speaking order: is its colour in the original image (None: it names none)."""
    out: list[bool | None] = []
    for t in g.clue_turns():
        color = _color(t, colors)
        out.append(None if color is None else color in original_colors)
    return out


def flagged_seat(seats: list[int], truth: list[bool | None]) -> int | None:
    """The one seat whose clues the checks contradict (clue k by `seats[k]`, judged
    `truth[k]`), if exactly one seat is flagged."""
    flagged = {seat for seat, ok in zip(seats, truth) if ok is False}
    return flagged.pop() if len(flagged) == 1 else None


def observer_example(rng, scene: Scene, clevr: ClevrSettings, game: GameSettings, noise: float, na_share: float,
                     vote_prior: float = 0.0, summary: bool = False) -> Example:
    """`vote_prior` 0 (phases 1-2): the vote is random, the base never learns who the spy is.
    `vote_prior` q > 0 (phase 3, the vote prior): when exactly one seat is flagged, the vote
    names it with probability q, else it is random: a weak decision skill, as a pretrained
    VLM brings, that RL must make reliable. `summary`: the reasoning ends in the summary
    line (summary_line), the vote stays as drawn."""
    g = _game(rng, game, scene)
    _play_clues(rng, g, scene, clevr, noise, len(clue_turn_order(game)))
    (request,) = decision_requests(g)
    vote = "N/A" if rng.random() < na_share else str(int(rng.integers(1, game.n_players + 1)))
    if vote_prior > 0:  # (drawn only then: phases 1-2 keep their example streams)
        flagged = flagged_seat([t.seat for t in g.clue_turns()], observer_checks(g, scene.colors(ORIGINAL), clevr.colors))
        if rng.random() < vote_prior and flagged is not None:
            vote = str(flagged)
    target, truth = observer_target(g, scene.colors(ORIGINAL), clevr.colors, vote, summary)
    seats = [t.seat for t in g.clue_turns()]
    return Example("observer", _with_images(request.messages, scene), target, {"checks": truth, "seats": seats})


def make_example(rng: np.random.Generator, kind: Kind, base: BaseStageSettings, clevr: ClevrSettings,
                 game: GameSettings, size: int, vote_prior: float = 0.0, summary: bool = False) -> Example:
    """One example of `kind`, everything drawn from `rng`."""
    single = kind != "observer" and rng.random() < base.single_object_share
    scene = make_scene(rng, clevr, size, single=single)
    if kind == "clue":
        return clue_example(rng, scene, clevr, game, base.clue_noise)
    if kind == "judge":
        return judge_example(rng, scene, clevr)
    return observer_example(rng, scene, clevr, game, base.clue_noise, base.na_share, vote_prior, summary)


def sample_kind(rng: np.random.Generator, base: BaseStageSettings) -> Kind:
    weights = np.array([base.mix_clue, base.mix_judge, base.mix_observer], dtype=float)
    return KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]


# ----------------------------------------------------------------------------- scoring
_CHECK = re.compile(r"Player\s*(\d)\s*:\s*([a-z]+)(?:\s+(yes|no))?")


def score_clue(text: str, example: Example, colors: list[str]) -> tuple[bool, bool]:
    """(format ok: a valid boxed clue naming a colour, correct: that colour is in the own image)."""
    clue = parse_clue(text)
    color = color_of(clue.text, colors) if clue.valid else None
    return color is not None, color in example.truth["colors"]


def score_judge(text: str, example: Example) -> tuple[bool, bool]:
    """(format ok: starts with yes/no, correct)."""
    word = (re.findall(r"[a-z]+", text.lower()) or [""])[0]
    return word in ("yes", "no"), (word == "yes") == example.truth["consistent"] and word in ("yes", "no")


def score_observer(text: str, example: Example) -> tuple[int, int, bool, dict[str, tuple[int, int]]]:
    """(clue checks right, clue checks expected, every check emitted in order, per class).

    Check k is right when the k-th "Player s: <colour> yes|no" item names seat s of the k-th
    clue and its yes/no matches the original image (an invalid clue expects "none"). Per
    class: {"yes": (right, expected), "no": (right, expected)}: most clues are true, so the
    recall of the false ones ("no") is what says the checks look at the image.
    """
    reasoning = text.split("\\boxed", 1)[0]
    found = _CHECK.findall(reasoning)
    want = example.truth["checks"]
    right = 0
    by_class = {"yes": [0, 0], "no": [0, 0]}
    for expected in want:
        if expected is not None:
            by_class["yes" if expected else "no"][1] += 1
    for (seat, word, verdict), expected, seat_want in zip(found, want, example.truth["seats"]):
        if int(seat) != seat_want:
            continue
        if expected is None:
            right += word == "none"
        else:
            ok = verdict == ("yes" if expected else "no")
            right += ok
            by_class["yes" if expected else "no"][0] += ok
    complete = len(found) >= len(want) and all(int(f[0]) == s for f, s in zip(found, example.truth["seats"]))
    return right, len(want), complete, {k: (v[0], v[1]) for k, v in by_class.items()}


_SUMMARY = re.compile(re.escape(SUMMARY) + r"\s*(\d|none)")


def written_flag(text: str) -> int | None:
    """The one seat the reply's OWN checks flag ("Player s: colour no."), if exactly one."""
    checks = _CHECK.findall(text.split("\\boxed", 1)[0])
    return flagged_seat([int(seat) for seat, _, _ in checks], [verdict != "no" for _, _, verdict in checks])


def written_summary(text: str) -> int | str | None:
    """The seat the reply's summary line names, "none", or None without a summary line."""
    found = _SUMMARY.search(text.split("\\boxed", 1)[0])
    if found is None:
        return None
    return "none" if found.group(1) == "none" else int(found.group(1))
