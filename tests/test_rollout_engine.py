"""The batched engine drives the pure game core with a real (tiny) model."""

from __future__ import annotations

import pytest

from visionzero.game import read_records
from visionzero.game.viewer import write_viewer
from visionzero.rollout.engine import GameEngine, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.settings import load_settings

from .helpers import simple_pairs

pytestmark = pytest.mark.slow


class CountingPolicy:
    """Records every batch the engine sends (to check batching), then delegates."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def generate(self, requests, sampling, seed=0):
        self.calls.append((requests[0].stage, len(requests), sampling.n))
        return self.inner.generate(requests, sampling, seed)


@pytest.mark.parametrize("domain", ["clevr", "chart", "photo"])
def test_tiny_model_plays_four_games_per_domain(tiny_model, tmp_path, domain):
    s = load_settings(None, ["game.clue.max_new_tokens=12", "game.decision.max_new_tokens=8"])
    games = setup_games(simple_pairs(tmp_path / "pairs", 4, domain), s.game, seed=0)
    policy = CountingPolicy(HFPolicy(tiny_model))
    stats = GameEngine(policy, s.game).play(games, seed=0)
    # one batched call per (round, seat) over all 4 games, then one call for the 4 x G votes
    assert policy.calls == [("clue", 4, 1)] * (s.game.rounds * s.game.n_players) + [("decision", 4, s.game.group_size)]
    assert stats.generations == 4 * (s.game.rounds * s.game.n_players + s.game.group_size)
    for g in games:
        assert len(g.clue_turns()) == s.game.rounds * s.game.n_players
        assert len(g.decision_turns) == s.game.group_size
        for turn in g.turns:
            assert turn.prompt_ids and turn.completion_ids and turn.clue or turn.vote
    path = tmp_path / "games.jsonl"
    from visionzero.game import write_records

    write_records(path, games)
    again = read_records(path)
    assert [g.to_dict() for g in again] == [g.to_dict() for g in games]
    page = write_viewer(tmp_path / "games.html", games)
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 2 * len(games)


def test_same_seed_same_games_and_settings_honoured(tiny_model, tmp_path):
    s = load_settings(None, ["game.rounds=3", "game.n_players=5", "game.group_size=3", "game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6"])
    pairs = simple_pairs(tmp_path / "p", 2)
    runs = []
    for _ in range(2):
        games = setup_games(pairs, s.game, seed=7)
        GameEngine(HFPolicy(tiny_model), s.game).play(games, seed=3)
        runs.append([g.to_dict() for g in games])
    assert runs[0] == runs[1]
    game = runs[0][0]
    clue_turns = [t for t in game["turns"] if t["stage"] == "clue"]
    assert len(clue_turns) == 15 and {t["round"] for t in clue_turns} == {1, 2, 3}
    assert sum(t["stage"] == "decision" for t in game["turns"]) == 3


def test_civilian_voting_variant(tiny_model, tmp_path):
    s = load_settings(None, ["game.voting=civilians", "game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6"])
    games = setup_games(simple_pairs(tmp_path / "p", 3), s.game, seed=1)
    GameEngine(HFPolicy(tiny_model), s.game).play(games, seed=0)
    for g in games:
        voters = sorted(t.seat for t in g.decision_turns)
        assert voters == [seat for seat in range(1, 5) if seat != g.spy_seat]
