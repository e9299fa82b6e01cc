"""The base stage's examples: built from scene graphs only, truthful, and blind to the spy."""

from __future__ import annotations

import numpy as np
import pytest

from visionzero.base.examples import (
    ORIGINAL,
    check_line,
    clue_example,
    color_of,
    judge_example,
    make_scene,
    observer_example,
    score_clue,
    score_judge,
    score_observer,
)
from visionzero.game.parsing import parse_clue, parse_vote
from visionzero.game.prompts import render_plain
from visionzero.settings import load_settings

S = load_settings(None, ["profile=micro"])
CLEVR, GAME, SIZE = S.pairs.clevr, S.game, S.pairs.image_size


def _scenes(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng, [make_scene(rng, CLEVR, SIZE) for _ in range(n)]


def test_clue_targets_name_an_object_of_the_speakers_own_image():
    rng, scenes = _scenes(60)
    spoke_as_spy = 0
    for scene in scenes:
        ex = clue_example(rng, scene, CLEVR, GAME, noise=0.0)
        text = render_plain(ex.messages)
        assert "You are Player" in text and "\\boxed{}" in text  # the game's own clue prompt
        clue = parse_clue(ex.target)
        assert clue.valid and color_of(clue.text, CLEVR.colors) in ex.truth["colors"]
        spoke_as_spy += "Your role: SPY" in text
        if "Your role: SPY" in text:  # the spy describes its own (edited) image
            assert set(ex.truth["colors"]) == {o["color"] for o in scene.edited_objects}
    assert 0 < spoke_as_spy < 60


def test_spy_hint_says_what_this_world_changes():
    rng, (scene,) = _scenes(1)
    for _ in range(40):
        ex = clue_example(rng, scene, CLEVR, GAME, noise=0.0)
        text = render_plain(ex.messages)
        if "Your role: SPY" in text:
            assert "one object has a different colour, at the same position" in text
            assert "two objects" not in text
            return
    pytest.fail("no spy turn drawn")


def test_judge_examples_are_balanced_and_true():
    rng, scenes = _scenes(300, seed=1)
    examples = [judge_example(rng, s, CLEVR) for s in scenes]
    yes = [e for e in examples if e.target == "yes"]
    assert 0.4 < len(yes) / len(examples) < 0.6
    for e, s in zip(examples, scenes):
        color = color_of(render_plain(e.messages).split("Clue:")[1], CLEVR.colors)
        assert (color in s.colors(ORIGINAL)) == (e.target == "yes")


def test_observer_checks_are_true_and_the_vote_is_random():
    rng, scenes = _scenes(400, seed=2)
    hits, boxes = 0, []
    for scene in scenes:
        ex = observer_example(rng, scene, CLEVR, GAME, noise=0.05, na_share=0.05)
        reasoning = ex.target.split("\\boxed")[0]
        assert reasoning.count("Player") == GAME.n_players * GAME.rounds
        right, total, complete, by_class = score_observer(ex.target, ex)
        assert right == total and complete and all(r == t for r, t in by_class.values())
        vote = parse_vote(ex.target, GAME.n_players)
        boxes.append(vote.kind)
        # who the spy was is never in the data: find it from the prompt's setup is impossible,
        # so compare the vote with the seat whose clue is inconsistent with the original image
        flagged = {s for s, ok in zip(ex.truth["seats"], ex.truth["checks"]) if ok is False}
        hits += vote.kind == "seat" and vote.seat in flagged
    assert boxes.count("na") < 60 and boxes.count("invalid") == 0
    # a vote copying the flagged seat would score far above chance; a random one does not
    assert hits / 400 < 0.3


def test_the_vote_prior_names_the_flagged_seat_at_its_rate():
    def follow(q, seed=4):
        rng, scenes = _scenes(600, seed=seed)
        hits = n = 0
        for scene in scenes:
            ex = observer_example(rng, scene, CLEVR, GAME, noise=0.05, na_share=0.0, vote_prior=q)
            flagged = {s for s, ok in zip(ex.truth["seats"], ex.truth["checks"]) if ok is False}
            if len(flagged) == 1:
                n += 1
                hits += parse_vote(ex.target, GAME.n_players).seat == flagged.pop()
        return hits / n, n

    chance, n0 = follow(0.0)
    half, n5 = follow(0.5)
    assert n0 > 200 and n5 > 200
    assert chance < 0.33 and abs(half - (0.5 + 0.5 / GAME.n_players)) < 0.08  # q + (1 - q) / seats


def test_the_summary_line_copies_the_checks_and_leaves_the_vote_random():
    from visionzero.base.examples import written_flag, written_summary

    rng, scenes = _scenes(400, seed=5)
    named = hits = 0
    for scene in scenes:
        ex = observer_example(rng, scene, CLEVR, GAME, noise=0.05, na_share=0.0, summary=True)
        flagged = {s for s, ok in zip(ex.truth["seats"], ex.truth["checks"]) if ok is False}
        want = flagged.pop() if len(flagged) == 1 else "none"
        # the line says what the written checks say (a copy of the reasoning, not a label)
        assert written_summary(ex.target) == want and written_flag(ex.target) == (None if want == "none" else want)
        if want != "none":
            named += 1
            hits += parse_vote(ex.target, GAME.n_players).seat == want
    assert named > 100 and hits / named < 0.35  # the vote is still random
    assert written_summary("Player 1: red no. \\boxed{1}") is None
    assert written_flag("Player 1: red no. Player 2: blue no. \\boxed{1}") is None


def test_scoring_counts_each_wrong_item():
    rng, (scene,) = _scenes(1, seed=3)
    ex = observer_example(rng, scene, CLEVR, GAME, noise=0.0, na_share=0.0)
    first = ex.target.split(" ")[0:4]
    seat, color = int(first[1].rstrip(":")), first[2]
    flipped = ex.target.replace(
        check_line(seat, color, True), check_line(seat, color, False), 1
    ) if " yes." in " ".join(first) else ex.target.replace(check_line(seat, color, False), check_line(seat, color, True), 1)
    right, total, complete, _ = score_observer(flipped, ex)
    assert (right, complete) == (total - 1, True)
    assert score_observer("\\boxed{2}", ex)[0] == 0
    assert score_clue("I see a red cube. \\boxed{There is a red cube.}", _fake({"colors": ["red"]}), CLEVR.colors) == (True, True)
    assert score_clue("no box", _fake({"colors": ["red"]}), CLEVR.colors) == (False, False)
    assert score_judge("no", _fake({"consistent": False})) == (True, True)
    assert score_judge("maybe", _fake({"consistent": False})) == (False, False)


def _fake(truth):
    from visionzero.base.examples import Example

    return Example("clue", [], "", truth)
