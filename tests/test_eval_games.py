"""Held-out game metrics, the mirrored win-rate match and the results files (scripted players)."""

from __future__ import annotations

import json
import random
import re

import pytest

from visionzero.eval.game_eval import clue_scene_metrics, game_metrics, play_selfplay
from visionzero.eval.heldout import EvalSet
from visionzero.eval.results import (
    append_curve,
    curve_series,
    read_curve,
    read_results,
    write_results,
)
from visionzero.eval.runner import evaluate_policies
from visionzero.eval.winrate import match_games, play_match, wilson_interval
from visionzero.rollout.engine import derive_seed
from visionzero.rollout.types import Completion
from visionzero.settings import load_settings

from .helpers import simple_pairs

_LINE = re.compile(r"^Player (\d+)(?: \(you\))?: (.*)$", re.M)


def _completion(text: str) -> Completion:
    return Completion([], [7] * len(text.split()), text, True)


class Player:
    """A scripted player of some skill, deterministic per request (not per batch).

    As spy it blends in (copies the civilians' clue) with probability `blend`, else it
    describes its own picture; as voter it names the player whose clue differs with
    probability `sight`, else it guesses a seat uniformly.
    """

    def __init__(self, blend: float, sight: float):
        self.blend, self.sight = blend, sight

    def generate(self, requests, sampling, seed=0):
        out = []
        for r in requests:
            rng = random.Random(derive_seed(seed, r.game_id, r.stage, r.round, r.seat))
            prompt = r.messages[-1]["content"][-1]["text"]
            samples = []
            for _ in range(sampling.n):
                if r.stage == "clue":
                    spy = "Your role: SPY" in prompt and rng.random() >= self.blend
                    text = "Looking. \\boxed{a blue disc}" if spy else "Looking. \\boxed{a red square}"
                else:
                    odd = [int(k) for k, clue in _LINE.findall(prompt) if "blue" in clue]
                    seat = odd[0] if odd and rng.random() < self.sight else rng.randint(1, 4)
                    text = f"Player {seat} differs from the rest. \\boxed{{{seat}}}"
                samples.append(_completion(text))
            out.append(samples)
        return out


class Abstainer:
    """Answers every prompt, clue or vote, with \\boxed{N/A}."""

    def generate(self, requests, sampling, seed=0):
        return [[_completion("I cannot tell. \\boxed{N/A}") for _ in range(sampling.n)] for _ in requests]


class Oracle:
    """Votes for the true spy (it is told the spy seats); its clues are plain."""

    def __init__(self, spy_seats: dict[str, int]):
        self.spy_seats = spy_seats

    def generate(self, requests, sampling, seed=0):
        out = []
        for r in requests:
            text = f"I know it. \\boxed{{{self.spy_seats[r.game_id]}}}" if r.stage == "decision" else "\\boxed{a thing}"
            out.append([_completion(text) for _ in range(sampling.n)])
        return out


class Recorder:
    """Records what each call asked, then delegates."""

    def __init__(self, inner):
        self.inner, self.calls, self.samplings = inner, [], []

    def generate(self, requests, sampling, seed=0):
        self.calls.append([(r.game_id, r.stage, r.seat) for r in requests])
        self.samplings.append((requests[0].stage, sampling.temperature, sampling.n))
        return self.inner.generate(requests, sampling, seed)


@pytest.fixture(scope="module")
def settings():
    return load_settings(None, [])


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    return simple_pairs(folder / "a", 40, "clevr") + simple_pairs(folder / "b", 40, "chart")


def test_abstaining_model_has_accuracy_0_and_na_rate_1(settings, pairs):
    games, _ = play_selfplay(Abstainer(), pairs[:6], settings.game, seed=0)
    m = game_metrics(games)
    assert m["game/vote_accuracy"] == 0.0 and m["game/spy_identified"] == 0.0
    assert m["game/na_rate"] == 1.0 and m["game/invalid_rate"] == 0.0
    assert m["game/votes"] == 6 * settings.game.group_size
    assert m["game/clue_valid_rate"] == 1.0  # "N/A" is a (useless) boxed clue
    assert m["game/clevr/games"] == 6 and "game/chart/games" not in m


def test_game_metrics_per_domain_and_lengths(settings, pairs):
    games, _ = play_selfplay(Player(blend=0.0, sight=1.0), pairs[:4] + pairs[40:43], settings.game, seed=0)
    m = game_metrics(games)
    # a spy that always shows its difference, found by voters that always see it
    assert m["game/spy_identified"] == m["game/vote_accuracy"] == 1.0
    assert m["game/clevr/games"] == 4 and m["game/chart/games"] == 3 and m["game/games"] == 7
    assert m["game/clue_tokens"] == 4.0  # "Looking. \boxed{a red square}" -> 4 scripted tokens
    assert m["game/clue_chars"] == len("a red square") * 0.75 + len("a blue disc") * 0.25
    assert m["game/vote_format_rate"] == 1.0


class OneSeat:
    """Always votes for one seat: no skill, and it must not pass for any."""

    def __init__(self, seat: int):
        self.seat = seat

    def generate(self, requests, sampling, seed=0):
        text = f"Hmm. \\boxed{{{self.seat}}}"
        return [[_completion(text if r.stage == "decision" else "\\boxed{a thing}") for _ in range(sampling.n)] for r in requests]


def test_clue_scene_metrics_say_whether_the_clues_give_the_spy_away(settings, pairs):
    """Originals are red squares, the spy's image a blue disc: a spy that describes its own
    image names a colour absent from the original (identifiable); one that blends in does not."""
    scenes = {p.id: {"red"} for p in pairs}
    rates = {}
    for blend in (0.0, 0.5, 1.0):
        games, _ = play_selfplay(Player(blend=blend, sight=0.0), pairs[:30], settings.game, seed=0)
        m = clue_scene_metrics(games, scenes)
        assert m["game/civilian_clue_true_rate"] == 1.0
        rates[blend] = (m["game/spy_identifiable"], m["game/spy_clue_false_rate"])
    assert rates[0.0] == (1.0, 1.0)
    assert rates[1.0] == (0.0, 0.0)
    assert 0.0 < rates[0.5][1] < 1.0 and 0.0 < rates[0.5][0] < 1.0  # two rounds: either false clue flags the spy
    assert clue_scene_metrics(games, {}) == {}  # no scene graphs (charts, photos): nothing claimed


def test_seat_piling_is_measured_against_the_best_constant_seat(settings, pairs):
    games, _ = play_selfplay(OneSeat(2), pairs[:40], settings.game, seed=1)
    m = game_metrics(games)
    share = sum(g.spy_seat == 2 for g in games) / len(games)
    assert m["game/vote_accuracy"] == pytest.approx(share) and m["game/vote_share/seat2"] == 1.0
    assert m["game/spy_seat2/vote_accuracy"] == 1.0 and m["game/spy_seat1/vote_accuracy"] == 0.0
    best = max(sum(g.spy_seat == k for g in games) for k in range(1, 5)) / len(games)
    assert m["game/best_constant_seat_accuracy"] == pytest.approx(best) and best >= share
    assert m["game/accuracy_over_constant"] <= 0.0
    seeing, _ = play_selfplay(Player(blend=0.0, sight=1.0), pairs[:40], settings.game, seed=1)
    assert game_metrics(seeing)["game/accuracy_over_constant"] > 0.5


def test_same_spy_seats_whatever_the_model(settings, pairs):
    a, _ = play_selfplay(Abstainer(), pairs[:10], settings.game, seed=5)
    b, _ = play_selfplay(Player(0.5, 0.5), pairs[:10], settings.game, seed=5)
    assert [g.spy_seat for g in a] == [g.spy_seat for g in b]
    assert len({g.spy_seat for g in a}) > 1
    mirrored = match_games(pairs[:10], settings.game, seed=5)
    assert [m.game.spy_seat for m in mirrored] == [g.spy_seat for g in a] * 2


def test_two_copies_of_one_model_score_about_half(settings, pairs):
    result = play_match(Player(0.5, 0.7), Player(0.5, 0.7), pairs, settings.game, seed=0)
    m = result.metrics()
    assert m["match/games"] == 160
    assert m["match/ci_low"] < 0.5 < m["match/ci_high"]
    assert 0.1 < m["match/spy_identified"] < 0.9  # the games are not decided in advance
    # a better voter and subtler spy beats the same opponent, beyond the interval
    strong = play_match(Player(0.9, 1.0), Player(0.5, 0.7), pairs, settings.game, seed=0).metrics()
    assert strong["match/ci_low"] > 0.5 and strong["win_rate"] > m["win_rate"]


def test_civilians_win_only_by_naming_the_spy(settings, pairs):
    games = match_games(pairs[:8], settings.game, seed=1)
    oracle = Oracle({m.game.game_id: m.game.spy_seat for m in games})
    both_abstain = play_match(Abstainer(), Abstainer(), pairs[:8], settings.game, seed=1).metrics()
    assert both_abstain["match/as_spy"] == 1.0 and both_abstain["match/as_civilians"] == 0.0
    assert both_abstain["win_rate"] == 0.5
    assert play_match(oracle, Abstainer(), pairs[:8], settings.game, seed=1).metrics()["win_rate"] == 1.0
    assert play_match(Abstainer(), oracle, pairs[:8], settings.game, seed=1).metrics()["win_rate"] == 0.0


@pytest.mark.parametrize("voting", ["observer", "civilians"])
def test_routing_gives_each_side_its_seats_in_one_batch_per_turn(pairs, voting):
    s = load_settings(None, [f"game.voting={voting}"])
    cand, opp = Recorder(Player(0.5, 0.5)), Recorder(Player(0.5, 0.5))
    result = play_match(cand, opp, pairs[:5], s.game, seed=2)
    spy = {m.game.game_id: m.game.spy_seat for m in result.matches}
    turns = s.game.rounds * s.game.n_players + 1
    assert len(cand.calls) == len(opp.calls) == turns  # batched: one call per model per turn
    for calls, me in ((cand.calls, "candidate"), (opp.calls, "opponent")):
        for game_id, stage, seat in (x for call in calls for x in call):
            plays_spy = stage == "clue" and seat == spy[game_id]
            candidate_is_spy = game_id.endswith("~candidate-spy")
            assert (plays_spy == candidate_is_spy) == (me == "candidate"), (game_id, stage, seat)
    voters = {seat for call in cand.calls + opp.calls for _, stage, seat in call if stage == "decision"}
    assert voters == ({0} if voting == "observer" else {1, 2, 3, 4})
    for m in result.matches:  # the spy never votes
        assert all(t.seat != m.game.spy_seat for t in m.game.decision_turns)


@pytest.mark.parametrize("temperature", ["0.0", "null", "0.3"])
def test_held_out_games_are_played_at_the_eval_temperature(pairs, temperature):
    s = load_settings(None, [f"eval.temperature={temperature}", "eval.vqa_per_type=0"])
    cand, opp = Recorder(Player(0.5, 0.7)), Recorder(Player(0.5, 0.7))
    report = evaluate_policies(cand, opp, EvalSet(pairs[:6], [], 0), s)
    want = {"0.0": (0.0, 0.0), "null": (s.game.clue.temperature, s.game.decision.temperature), "0.3": (0.3, 0.3)}[temperature]
    for stage, t, n in cand.samplings + opp.samplings:
        assert t == want[stage == "decision"], (stage, t)
        # greedy votes are identical: one is decoded per game and copied G times
        assert n == (1 if stage == "clue" or t == 0 else s.game.group_size)
    assert all(len(g.decision_turns) == s.game.group_size for g in report.selfplay)
    if temperature == "0.0":
        assert all(len({t.text for t in g.decision_turns}) == 1 for g in report.selfplay)


def test_wilson_interval():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(50, 100, 0.99)[0] < wilson_interval(50, 100, 0.9)[0]


def test_results_file_and_curve(tmp_path):
    metrics = {"win_rate": 0.5, "vqa/accuracy": 0.25, "game/games": 8}
    path = write_results(tmp_path / "eval.json", metrics)
    assert read_results(path) == {"game/games": 8.0, "vqa/accuracy": 0.25, "win_rate": 0.5}
    first = path.read_bytes()
    write_results(path, dict(reversed(list(metrics.items()))))
    assert path.read_bytes() == first  # sorted keys: same results, same bytes
    with pytest.raises(ValueError, match="win_rate"):
        write_results(tmp_path / "bad.json", {"win_rate": float("nan")})
    curve = tmp_path / "curve.jsonl"
    append_curve(curve, 4, {"win_rate": 0.6})
    append_curve(curve, 2, {"win_rate": 0.5, "vqa/accuracy": 0.1})
    append_curve(curve, 4, {"win_rate": 0.7})  # a re-evaluated iteration replaces its row
    rows = read_curve(curve)
    assert [r["iteration"] for r in rows] == [2, 4]
    assert curve_series(rows, "win_rate") == ([2, 4], [0.5, 0.7])
    assert curve_series(rows, "vqa/accuracy") == ([2], [0.1])
    assert all(json.loads(line) for line in curve.read_text().splitlines())
    assert read_curve(tmp_path / "missing.jsonl") == []
