"""Game rules: seats, turn order, who sees what, voting variants, spy seat draw."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from PIL import Image

from visionzero.game import (
    OBSERVER,
    ChatRequest,
    Completion,
    Game,
    clue_request,
    clue_turn_order,
    decision_requests,
    new_game,
    next_clue_turn,
    prompts,
    record_clue,
    record_vote,
    record_votes,
    voters,
)
from visionzero.game.prompts import DOMAIN_TEXT, FIRST_SPEAKER_NOTE, render_plain
from visionzero.settings.schema import GameSettings

ORIG, EDIT = "pairs/p0_original.png", "pairs/p0_edited.png"


def _secret(round_: int, seat: int) -> str:
    return f"SECRET-r{round_}-s{seat}-reasoning"


def _clue(round_: int, seat: int) -> str:
    return f"CLUE-r{round_}-s{seat}"


def _text(req: ChatRequest) -> str:
    return render_plain(req.messages)


def play_clues(game: Game) -> list[ChatRequest]:
    """Play the whole clue stage with distinctive reasoning and clues; return the prompts."""
    requests = []
    for round_, seat in clue_turn_order(game.settings):
        req = clue_request(game, round_, seat)
        requests.append(req)
        record_clue(game, round_, seat, f"{_secret(round_, seat)} \\boxed{{{_clue(round_, seat)}}}")
    return requests


VARIANTS = [
    GameSettings(),
    GameSettings(n_players=5, rounds=3, group_size=3),
    GameSettings(voting="civilians", spy_image="blank"),
    GameSettings(n_players=3, rounds=1, voting="civilians"),
]


@pytest.mark.parametrize("settings", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_no_prompt_shows_another_players_reasoning(settings: GameSettings, seed: int) -> None:
    game = new_game("p0", "clevr", ORIG, EDIT, settings, seed, image_size=(64, 48))
    requests = play_clues(game)
    requests += decision_requests(game)
    order = clue_turn_order(settings)
    for req in requests:
        text = _text(req)
        for round_, seat in order:
            spoken_before = req.stage == "decision" or (round_, seat) < (req.round, req.seat)
            own = seat == req.seat
            # reasoning: only the seat's own, only from its earlier turns
            assert (_secret(round_, seat) in text) == (own and spoken_before)
            # clue texts: every earlier one, no later one
            assert (_clue(round_, seat) in text) == spoken_before


def test_first_speaker_note_only_for_the_first_turn() -> None:
    game = new_game("p0", "chart", ORIG, EDIT, GameSettings(), seed=3)
    requests = play_clues(game)
    assert FIRST_SPEAKER_NOTE in _text(requests[0])
    assert all(FIRST_SPEAKER_NOTE not in _text(r) for r in requests[1:])


@pytest.mark.parametrize("domain", sorted(DOMAIN_TEXT))
def test_spy_hint_and_images(domain: str) -> None:
    hint = DOMAIN_TEXT[domain].change
    for seed in range(6):
        game = new_game("p0", domain, ORIG, EDIT, GameSettings(), seed)
        for req in play_clues(game):
            is_spy = req.seat == game.spy_seat
            assert (hint in _text(req)) == is_spy
            assert ("Your role: SPY" in _text(req)) == is_spy
            assert req.images == [EDIT if is_spy else ORIG]
            image_items = [c for m in req.messages for c in m["content"] if c["type"] == "image"]
            assert [c["image"] for c in image_items] == req.images


def test_blank_spy_image() -> None:
    settings = GameSettings(spy_image="blank")
    game = new_game("p0", "photo", ORIG, EDIT, settings, seed=5, image_size=(96, 64))
    assert game.spy_image == "blank:96x64"
    for req in play_clues(game):
        if req.seat == game.spy_seat:
            assert req.images == ["blank:96x64"]
            assert "Your image is blank" in _text(req)
        else:
            assert req.images == [ORIG]


def test_blank_size_read_from_original(tmp_path) -> None:
    path = tmp_path / "orig.png"
    Image.new("RGB", (40, 30), "red").save(path)
    game = new_game("p0", "clevr", str(path), EDIT, GameSettings(spy_image="blank"), seed=0)
    assert game.spy_image == "blank:40x30"


def test_observer_sees_original_and_every_clue() -> None:
    settings = GameSettings(n_players=5, rounds=3, group_size=6)
    game = new_game("p0", "clevr", ORIG, EDIT, settings, seed=11)
    play_clues(game)
    (req,) = decision_requests(game)
    assert (req.stage, req.seat, req.n_samples, req.images) == ("decision", OBSERVER, 6, [ORIG])
    text = _text(req)
    assert all(_clue(r, s) in text for r, s in clue_turn_order(settings))
    assert DOMAIN_TEXT["clevr"].change in text
    turns = record_votes(game, [f"Player {k % 5 + 1} looks odd to me. \\boxed{{{k % 5 + 1}}}" for k in range(6)])
    assert [t.sample for t in turns] == list(range(6))
    assert {t.seat for t in turns} == {OBSERVER} and all(t.image == ORIG for t in turns)
    assert sum(game.vote_counts.values()) == 6


def test_turn_order_and_seats_follow_settings() -> None:
    settings = GameSettings(n_players=5, rounds=3)
    order = clue_turn_order(settings)
    assert order == [(r, s) for r in (1, 2, 3) for s in (1, 2, 3, 4, 5)]
    game = new_game("p0", "clevr", ORIG, EDIT, settings, seed=0)
    assert game.seats == [1, 2, 3, 4, 5] and len(game.civilians) == 4
    play_clues(game)
    assert [(t.round, t.seat) for t in game.clue_turns()] == order
    assert next_clue_turn(game) is None


def test_civilians_vote_and_the_spy_does_not() -> None:
    settings = GameSettings(voting="civilians", group_size=8)
    game = new_game("p0", "clevr", ORIG, EDIT, settings, seed=4)
    play_clues(game)
    requests = decision_requests(game)
    assert [r.seat for r in requests] == game.civilians == voters(game)
    assert all(r.n_samples == 1 and r.images == [ORIG] for r in requests)
    assert game.spy_seat not in [r.seat for r in requests]
    with pytest.raises(ValueError):
        record_vote(game, game.spy_seat, 0, "\\boxed{1}")
    with pytest.raises(ValueError):
        record_vote(game, OBSERVER, 0, "\\boxed{1}")
    record_votes(game, [Completion(f"\\boxed{{{game.spy_seat}}}", completion_ids=[1, 2])] * 3)
    assert [t.seat for t in game.decision_turns] == game.civilians
    assert game.vote_counts[game.spy_seat] == 3 and game.spy_identified


def test_out_of_order_calls_are_refused() -> None:
    game = new_game("p0", "clevr", ORIG, EDIT, GameSettings(), seed=0)
    with pytest.raises(ValueError):
        clue_request(game, 1, 2)
    with pytest.raises(ValueError):
        decision_requests(game)
    record_clue(game, 1, 1, "\\boxed{x}")
    with pytest.raises(ValueError):
        record_clue(game, 1, 1, "\\boxed{again}")
    with pytest.raises(ValueError):
        new_game("p0", "maps", ORIG, EDIT, GameSettings(), seed=0)


def test_wrong_number_of_votes_is_refused() -> None:
    game = new_game("p0", "clevr", ORIG, EDIT, GameSettings(group_size=4), seed=0)
    play_clues(game)
    with pytest.raises(ValueError):
        record_votes(game, ["\\boxed{1}"] * 3)
    record_votes(game, ["\\boxed{1}"] * 4)
    with pytest.raises(ValueError):
        record_votes(game, ["\\boxed{1}"] * 4)


def test_spy_seat_deterministic_and_uniform() -> None:
    settings = GameSettings(n_players=4)
    seats = [new_game("p", "clevr", ORIG, EDIT, settings, seed).spy_seat for seed in range(4000)]
    again = [new_game("p", "clevr", ORIG, EDIT, settings, seed).spy_seat for seed in range(4000)]
    assert seats == again
    counts = Counter(seats)
    assert set(counts) == {1, 2, 3, 4}
    # chi-square with 3 degrees of freedom; 16.27 is the 0.1% critical value
    chi2 = sum((c - 1000) ** 2 / 1000 for c in counts.values())
    assert chi2 < 16.27


def test_balanced_seats_fill_every_seat_once_a_block_and_stay_uniform_per_game() -> None:
    from visionzero.rollout.engine import balanced_seat

    seats = [balanced_seat(7, k, 4) for k in range(4000)]
    assert seats == [balanced_seat(7, k, 4) for k in range(4000)]
    assert all(sorted(seats[b : b + 4]) == [1, 2, 3, 4] for b in range(0, 4000, 4))
    assert len({tuple(seats[b : b + 4]) for b in range(0, 4000, 4)}) == 24  # every permutation occurs
    first = Counter(seats[0::4])  # a game's seat (here the first of its block) stays uniform
    assert sum((c - 250) ** 2 / 250 for c in first.values()) < 16.27
    game = new_game("p", "clevr", ORIG, EDIT, GameSettings(n_players=4), 0, spy_seat=seats[5])
    assert game.spy_seat == seats[5]
    with pytest.raises(ValueError, match="outside the seats"):
        new_game("p", "clevr", ORIG, EDIT, GameSettings(n_players=4), 0, spy_seat=5)


def test_game_is_reproducible_from_its_seed() -> None:
    a = new_game("p", "chart", ORIG, EDIT, GameSettings(), seed=42)
    b = new_game("p", "chart", ORIG, EDIT, GameSettings(), seed=42)
    assert a.to_dict() == b.to_dict()
    assert [_text(r) for r in play_clues(a)] == [_text(r) for r in play_clues(b)]


def test_vote_summary() -> None:
    game = new_game("p0", "clevr", ORIG, EDIT, GameSettings(group_size=8), seed=1)
    play_clues(game)
    spy = game.spy_seat
    other = game.civilians[0]
    long = "Enough reasoning to count. "
    texts = [long + f"\\boxed{{{spy}}}"] * 3 + [long + f"\\boxed{{{other}}}"] * 3
    texts += [long + "\\boxed{N/A}", "garbage"]
    record_votes(game, texts)
    assert game.vote_counts[spy] == 3 and game.vote_counts[other] == 3
    assert sum(game.vote_counts.values()) == 6
    assert (game.na_count, game.invalid_count) == (1, 1)
    assert game.accuracy == pytest.approx(3 / 8)
    assert not game.spy_identified  # a tie is not an identification


def test_game_core_imports_no_torch() -> None:
    code = (
        "import sys, visionzero.game, visionzero.game.viewer; "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_spy_hint_says_what_the_pairs_edit_did(tmp_path):
    from visionzero.game.prompts import clevr_change_hint
    from visionzero.pairs import generate_pairs
    from visionzero.rollout.engine import setup_games
    from visionzero.settings import load_settings
    from visionzero.train.loop import pair_pool

    recolour = [{"before": {"color": "red", "shape": "cube"}, "after": {"color": "blue", "shape": "cube"}}]
    assert clevr_change_hint(recolour) == "one object has a different colour, at the same position"
    swap = [{"before": {"shape": "cube"}, "after": {"shape": "sphere"}}] * 2
    assert clevr_change_hint(swap) == "two objects were replaced by objects of another colour and shape, at the same positions"
    micro = load_settings(None, ["profile=micro"])
    generate_pairs(micro.pairs, "clevr", 3, tmp_path, n_eval=0, workers=1)
    (game, *_) = setup_games(pair_pool([tmp_path]), micro.game, seed=0)
    spy = render_plain(clue_request(game, 1, 1).messages) if game.spy_seat == 1 else None
    observer_text = render_plain(prompts.observer_messages(game))
    assert "one object has a different colour" in observer_text and "two objects" not in observer_text
    assert spy is None or "one object has a different colour" in spy
