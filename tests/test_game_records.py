"""Game records: JSON Lines round trip, byte-stable output, clear errors on bad lines."""

from __future__ import annotations

import pytest

from visionzero.game import (
    Completion,
    Game,
    clue_request,
    clue_turn_order,
    decision_requests,
    new_game,
    read_records,
    record_clue,
    record_votes,
    write_records,
)
from visionzero.settings.schema import GameSettings

ODD = "emoji \U0001F600, lone surrogate \ud800, quote \" brace } box \\boxed{ newline\n"


def played_game(seed: int, settings: GameSettings) -> Game:
    """A finished game whose turns carry token ids, log-probs and odd text."""
    game = new_game(f"pair{seed}", "chart", "o.png", "e.png", settings, seed, image_size=(32, 32))
    for round_, seat in clue_turn_order(settings):
        clue_request(game, round_, seat)
        text = f"{ODD} seat {seat} \\boxed{{clue {round_}.{seat}}}"
        record_clue(game, round_, seat, Completion(text, [1, 2, 3], [4, 5], [-0.5, -1.25]))
    n = sum(r.n_samples for r in decision_requests(game))
    votes = [Completion(f"{ODD} \\boxed{{{k % 5}}}", [7], [8, 9], [-0.1, -0.2]) for k in range(n)]
    votes[0] = Completion("Reasoning long enough. \\boxed{N/A}")  # no token data
    record_votes(game, votes)
    return game


def test_round_trip_keeps_everything(tmp_path) -> None:
    games = [
        played_game(0, GameSettings()),
        played_game(1, GameSettings(voting="civilians", spy_image="blank", rounds=1)),
    ]
    path = write_records(tmp_path / "games.jsonl", games)
    back = read_records(path)
    assert [g.to_dict() for g in back] == [g.to_dict() for g in games]
    for g, b in zip(games, back):
        assert b.settings == g.settings
        assert b.turns[0].clue == g.turns[0].clue and b.turns[0].logprobs == [-0.5, -1.25]
        assert b.turns[-1].vote == g.turns[-1].vote
        assert b.decision_turns[0].prompt_ids is None
        assert (b.spy_seat, b.vote_counts, b.na_count, b.invalid_count) == (
            g.spy_seat, g.vote_counts, g.na_count, g.invalid_count,
        )  # fmt: skip
    # same games, same bytes
    again = write_records(tmp_path / "again.jsonl", back)
    assert again.read_bytes() == path.read_bytes()
    assert len(path.read_text().splitlines()) == 2


def test_bad_line_names_file_and_line(tmp_path) -> None:
    path = write_records(tmp_path / "games.jsonl", [played_game(0, GameSettings())])
    with open(path, "a") as f:
        f.write('{"version": 1, "game_id": "x"}\n')
    with pytest.raises(ValueError, match=r"games.jsonl:2: not a game record"):
        read_records(path)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r":1: not a game record"):
        read_records(path)
