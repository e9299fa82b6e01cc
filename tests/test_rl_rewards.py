"""Decision rewards, group normalisation and the zero-sum clue reward (METHOD.md section 4)."""

from __future__ import annotations

import math
import random

import pytest

from visionzero.rl.rewards import (
    Vote,
    civilian_game_rewards,
    clue_rewards,
    decision_reward,
    group_normalize,
    guess_candidates,
    observer_game_rewards,
    random_guess_value,
    seat_vote_counts,
    zero_sum_clue_rewards,
)
from visionzero.settings.schema import RewardSettings

PAPER = RewardSettings()
SHAPED = RewardSettings(decision="shaped")


def seat(k: int, ok: bool = True) -> Vote:
    return Vote("seat", k, ok)


# --------------------------------------------------------------------------- decision
def test_paper_decision_reward_ignores_format() -> None:
    spy = 3
    for ok in (True, False):
        assert decision_reward(seat(3, ok), spy, PAPER) == 1.0
        assert decision_reward(Vote("na", format_ok=ok), spy, PAPER) == -0.5
        assert decision_reward(seat(1, ok), spy, PAPER) == -1.0
        assert decision_reward(Vote("invalid", format_ok=ok), spy, PAPER) == -1.0
        assert decision_reward(seat(9, ok), spy, PAPER) == -1.0  # out of range: wrong


def test_decision_reward_values_come_from_settings() -> None:
    custom = RewardSettings(correct=2.0, na=-0.8, wrong=-0.25)
    assert decision_reward(seat(1), 1, custom) == 2.0
    assert decision_reward(Vote("na"), 1, custom) == -0.8
    assert decision_reward(seat(2), 1, custom) == -0.25


@pytest.mark.parametrize(
    "vote, good, bad",
    [
        ("correct", 2.49, 1.89),  # 0.3 + 1.2*1 + 0.99 / -0.3 + 1.2 + 0.99
        ("na", -0.30, -0.90),  # 0.3 + 1.2*(-0.5) / -0.3 - 0.6
        ("wrong", -0.90, -1.50),  # 0.3 - 1.2 / -0.3 - 1.2
        ("invalid", -0.90, -1.50),  # scored like a wrong vote
    ],
)
def test_shaped_reward_table(vote: str, good: float, bad: float) -> None:
    spy = 2
    make = {
        "correct": lambda ok: seat(2, ok),
        "na": lambda ok: Vote("na", format_ok=ok),
        "wrong": lambda ok: seat(4, ok),
        "invalid": lambda ok: Vote("invalid", format_ok=ok),
    }[vote]
    assert decision_reward(make(True), spy, SHAPED) == pytest.approx(good, abs=1e-12)
    assert decision_reward(make(False), spy, SHAPED) == pytest.approx(bad, abs=1e-12)


def test_vote_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError):
        Vote("seat")
    with pytest.raises(ValueError):
        Vote("na", 2)
    with pytest.raises(ValueError):
        Vote("maybe")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- group normalisation
def test_group_normalize_uses_population_std() -> None:
    # [1, -1]: mean 0, population std 1 (the sample std would be sqrt 2).
    assert group_normalize([1.0, -1.0]) == pytest.approx(
        [1 / (1 + 1e-8), -1 / (1 + 1e-8)], abs=1e-15
    )
    # [1, 1, 1, -1]: mean 0.5, variance (3*0.25 + 2.25)/4 = 0.75.
    s = math.sqrt(0.75)
    assert group_normalize([1.0, 1.0, 1.0, -1.0]) == pytest.approx(
        [0.5 / s, 0.5 / s, 0.5 / s, -1.5 / s], rel=1e-7
    )


def test_group_normalize_all_equal_gives_exact_zeros() -> None:
    assert group_normalize([-0.5] * 8) == [0.0] * 8  # the all-N/A group
    assert group_normalize([2.49] * 8) == [0.0] * 8
    assert group_normalize([]) == []


def test_group_normalize_mean_zero_std_one() -> None:
    rng = random.Random(1)
    for _ in range(200):
        g = [rng.choice([1.0, -0.5, -1.0]) for _ in range(8)]
        a = group_normalize(g)
        if len(set(g)) == 1:
            assert a == [0.0] * 8
            continue
        mean = sum(a) / 8
        std = math.sqrt(sum((x - mean) ** 2 for x in a) / 8)
        assert abs(mean) < 1e-12 and std == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- clue reward
def test_all_votes_on_the_spy() -> None:
    # 3 civilians, spy in seat 2, 8 votes on the spy: gap = 8 - 0 = 8.
    r = zero_sum_clue_rewards([0, 8, 0, 0], spy_seat=2, beta=0.1, lam=0.1)
    assert r[1] == pytest.approx(-0.1 * 8)  # -0.8
    for j in (0, 2, 3):
        assert r[j] == pytest.approx(0.1 / 3 * 8)  # +0.267
        assert round(r[j], 3) == 0.267


def test_split_vote_example() -> None:
    # 4 votes on civilian A (seat 1), 4 on B (seat 2), none on C (seat 3) or the spy (seat 4).
    r = zero_sum_clue_rewards([4, 4, 0, 0], spy_seat=4, beta=0.1, lam=0.1)
    mean_c = 8 / 3
    gap = 0 - mean_c
    assert r[3] == pytest.approx(-0.1 * gap) and round(r[3], 3) == 0.267
    for j in (0, 1):
        assert r[j] == pytest.approx(0.1 / 3 * gap - 0.1 * (4 - mean_c))  # -2/9
        assert round(r[j], 3) == -0.222
    assert r[2] == pytest.approx(0.1 / 3 * gap - 0.1 * (0 - mean_c))  # 1.6/9
    assert round(r[2], 3) == 0.178


def test_clue_rewards_drop_na_invalid_and_out_of_range() -> None:
    votes = [seat(1)] * 4 + [seat(2)] * 4 + [Vote("na"), Vote("invalid"), seat(5), seat(0)]
    assert seat_vote_counts(votes, 4) == [4, 4, 0, 0]
    assert clue_rewards(votes, 4, 4, PAPER) == zero_sum_clue_rewards([4, 4, 0, 0], 4, 0.1, 0.1)


def test_no_valid_votes_pays_nothing() -> None:
    assert clue_rewards([Vote("na")] * 8, 1, 4, PAPER) == [0.0] * 4


def test_clue_rewards_are_zero_sum_on_random_votes() -> None:
    rng = random.Random(0)
    kinds = ["seat"] * 6 + ["na", "invalid"]
    for _ in range(1000):
        n = rng.randint(3, 9)
        spy = rng.randint(1, n)
        settings = RewardSettings(beta=rng.uniform(0, 1), **{"lambda": rng.uniform(0, 1)})
        votes = []
        for _ in range(rng.randint(0, 16)):
            kind = rng.choice(kinds)
            votes.append(Vote("seat", rng.randint(0, n + 1)) if kind == "seat" else Vote(kind))  # type: ignore[arg-type]
        r = clue_rewards(votes, spy, n, settings)
        assert len(r) == n
        assert abs(math.fsum(r)) < 1e-12
        civ = [x for s, x in enumerate(r, 1) if s != spy]
        # The lambda terms cancel over civilians: their mean is -r_spy / n_c.
        assert math.fsum(civ) / (n - 1) == pytest.approx(-r[spy - 1] / (n - 1), abs=1e-12)


def test_bad_spy_seat_raises() -> None:
    with pytest.raises(ValueError):
        zero_sum_clue_rewards([1, 2, 3], spy_seat=4, beta=0.1, lam=0.1)


# --------------------------------------------------------------------------- whole games
def test_observer_game_rewards() -> None:
    votes = [seat(3)] * 6 + [Vote("na"), seat(1)]
    g = observer_game_rewards(votes, 3, 4, PAPER)
    assert g.voters == (0,) * 8
    assert g.decision == (1.0,) * 6 + (-0.5, -1.0)
    assert list(g.decision_advantages) == group_normalize(list(g.decision))
    # counts [1, 0, 6, 0]: mean_c = 1/3, gap = 17/3.
    assert g.clue[2] == pytest.approx(-0.1 * 17 / 3)
    assert g.clue[0] == pytest.approx(0.1 / 3 * 17 / 3 - 0.1 * (1 - 1 / 3))


def test_civilian_voting_variant() -> None:
    # 4 seats, spy in seat 2; civilians 1, 3, 4 vote (2, 2, N/A); the spy does not vote.
    votes = {4: Vote("na"), 1: seat(2), 3: seat(2)}
    g = civilian_game_rewards(votes, 2, 4, PAPER)
    assert g.voters == (1, 3, 4)  # seat order, whatever the mapping's order
    assert g.decision == (1.0, 1.0, -0.5)
    # mean 0.5, population std sqrt(0.5), so advantages 0.5/s, 0.5/s, -1/s.
    s = math.sqrt(0.5)
    assert list(g.decision_advantages) == pytest.approx([0.5 / s, 0.5 / s, -1 / s], rel=1e-7)
    # counts [0, 2, 0, 0]: r_spy = -0.1*2, each civilian +0.2/3.
    assert g.clue == pytest.approx((0.2 / 3, -0.2, 0.2 / 3, 0.2 / 3))


def test_civilian_variant_rejects_spy_or_unknown_voters() -> None:
    with pytest.raises(ValueError):
        civilian_game_rewards({2: seat(1)}, 2, 4, PAPER)
    with pytest.raises(ValueError):
        civilian_game_rewards({5: seat(1)}, 2, 4, PAPER)


# --------------------------------------------------------------------------- the N/A trap
def test_random_guess_value() -> None:
    assert random_guess_value(4, PAPER) == 0.25 * 1 + 0.75 * -1 == -0.5  # equals N/A: the trap
    assert random_guess_value(3, PAPER) == pytest.approx(1 / 3 - 2 / 3)
    assert random_guess_value(4, SHAPED) == pytest.approx(0.25 * 2.49 + 0.75 * -0.90)
    assert guess_candidates(4, "observer") == 4
    assert guess_candidates(4, "civilians") == 3
