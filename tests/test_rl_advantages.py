"""Role Advantage Estimation (RAE) and batch statistics."""

from __future__ import annotations

import json

import pytest

from visionzero.rl.advantages import (
    ClueGame,
    RaeState,
    RoleMeans,
    combine_role_means,
    rae_grouped,
    rae_sequential,
    rae_update,
    role_means,
)
from visionzero.rl.rewards import Vote
from visionzero.rl.stats import VoteGame, batch_stats, frac_reward_zero_std, na_warning, vote_stats
from visionzero.settings.schema import RewardSettings

# Three games, 4 seats. Spy rewards -0.8, -0.3, 0.4; civilian means 0.8/3, 0.1, -0.4/3.
G1 = ClueGame([-0.8, 0.8 / 3, 0.8 / 3, 0.8 / 3], spy_seat=1)
G2 = ClueGame([0.1, -0.3, 0.2, 0.0], spy_seat=2)
G3 = ClueGame([0.4, -0.1, -0.1, -0.2], spy_seat=1)
A = 0.9
# Baselines by hand, b <- 0.9 b + 0.1 r:
#   after G1: b_spy = -0.08,                     b_civ = 0.08/3
#   after G2: b_spy = -0.072 - 0.03 = -0.102,    b_civ = 0.024 + 0.01 = 0.034
#   after G3: b_spy = -0.0918 + 0.04 = -0.0518,  b_civ = 0.0306 - 0.04/3
B1 = (-0.08, 0.08 / 3)
B2 = (-0.102, 0.034)
B3 = (-0.0518, 0.0306 - 0.04 / 3)


def test_update_then_subtract_by_hand() -> None:
    state, adv = rae_sequential(RaeState(), [G1, G2, G3], A, "update_then_subtract")
    assert (state.b_spy, state.b_civ, state.updates) == (
        pytest.approx(B3[0]),
        pytest.approx(B3[1]),
        3,
    )
    assert adv[0] == pytest.approx([-0.72, 0.24, 0.24, 0.24])  # -0.8 + 0.08; 0.8/3 - 0.08/3
    assert adv[1] == pytest.approx([0.1 - 0.034, -0.3 + 0.102, 0.2 - 0.034, -0.034])
    assert adv[2] == pytest.approx([0.4 + 0.0518, -0.1 - B3[1], -0.1 - B3[1], -0.2 - B3[1]])


def test_subtract_then_update_by_hand() -> None:
    state, adv = rae_sequential(RaeState(), [G1, G2, G3], A, "subtract_then_update")
    assert (state.b_spy, state.b_civ) == (
        pytest.approx(B3[0]),
        pytest.approx(B3[1]),
    )  # same baselines
    assert adv[0] == pytest.approx(G1.rewards)  # baselines still 0
    assert adv[1] == pytest.approx([0.1 - B1[1], -0.3 - B1[0], 0.2 - B1[1], -B1[1]])
    assert adv[2] == pytest.approx([0.4 - B2[0], -0.1 - B2[1], -0.1 - B2[1], -0.2 - B2[1]])


def test_advantages_are_not_std_normalised() -> None:
    # Scaling every reward by 10 scales every advantage by 10 (a std normalisation would not).
    scaled = [ClueGame([10 * r for r in g.rewards], g.spy_seat) for g in (G1, G2, G3)]
    _, adv = rae_sequential(RaeState(), [G1, G2, G3], A, "update_then_subtract")
    _, adv10 = rae_sequential(RaeState(), scaled, A, "update_then_subtract")
    for a, a10 in zip(adv, adv10):
        assert a10 == pytest.approx([10 * x for x in a])


def test_grouped_update_shares_one_baseline_across_ranks() -> None:
    rank0, rank1 = [G1], [G2, G3]
    reduced = combine_role_means([role_means(rank0), role_means(rank1)])
    assert reduced == RoleMeans(
        pytest.approx((-0.8 - 0.3 + 0.4) / 3), pytest.approx((0.8 / 3 + 0.1 - 0.4 / 3) / 3), 3
    )
    s0, _ = rae_grouped(RaeState(), rank0, A, "update_then_subtract", means=reduced)
    s1, adv1 = rae_grouped(RaeState(), rank1, A, "update_then_subtract", means=reduced)
    assert s0 == s1 and s0.updates == 1
    assert s0.b_spy == pytest.approx(0.1 * (-0.7 / 3))
    assert adv1[1][0] == pytest.approx(0.4 - s0.b_spy)  # G3's spy sits in seat 1
    # One process over all games gives the same update.
    assert rae_grouped(RaeState(), rank0 + rank1, A, "update_then_subtract")[0] == s0


def test_empty_batch_leaves_state_alone() -> None:
    state = RaeState(0.1, -0.2, 4)
    assert rae_grouped(state, [], A, "update_then_subtract") == (state, [])
    assert rae_update(state, RoleMeans(1.0, 1.0, 0), A) == state


def test_state_round_trip_continues_identically() -> None:
    state, _ = rae_sequential(RaeState(), [G1, G2], A, "update_then_subtract")
    restored = RaeState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert rae_sequential(restored, [G3], A, "update_then_subtract") == rae_sequential(
        state, [G3], A, "update_then_subtract"
    )


def test_bad_alpha_and_spy_seat_raise() -> None:
    with pytest.raises(ValueError):
        rae_update(RaeState(), RoleMeans(0.0, 0.0, 1), 1.0)
    with pytest.raises(ValueError):
        role_means([ClueGame([0.0, 0.0], spy_seat=3)])


# --------------------------------------------------------------------------- statistics
def test_vote_stats() -> None:
    g1 = VoteGame(
        [
            Vote("seat", 2),
            Vote("seat", 2),
            Vote("na"),
            Vote("invalid"),
            Vote("seat", 3),
            Vote("seat", 9),
        ],
        2,
    )
    g2 = VoteGame([Vote("seat", 1), Vote("na")], 1)
    s = vote_stats([g1, g2])
    assert (s.votes, s.accuracy, s.na_rate, s.invalid_rate) == (8, 3 / 8, 2 / 8, 1 / 8)
    assert vote_stats([]) == (0, 0.0, 0.0, 0.0)


def test_frac_reward_zero_std() -> None:
    assert frac_reward_zero_std([[-0.5] * 8, [1.0, -1.0], [1.0, 1.0]]) == 2 / 3
    assert frac_reward_zero_std([]) == 0.0


def test_batch_stats() -> None:
    rae = RaeState(-0.1, 0.02, 7)
    stats = batch_stats([VoteGame([Vote("seat", 1), Vote("na")], 1)], [[1.0, -0.5]], [G1, G2], rae)
    assert (
        stats["vote_accuracy"] == 0.5 and stats["na_rate"] == 0.5 and stats["invalid_rate"] == 0.0
    )
    assert stats["frac_reward_zero_std"] == 0.0 and stats["decision_reward_mean"] == 0.25
    assert stats["clue_reward_spy_mean"] == pytest.approx((-0.8 - 0.3) / 2)
    assert stats["clue_reward_civ_mean"] == pytest.approx((0.8 / 3 + 0.1) / 2)
    assert (stats["rae_b_spy"], stats["rae_b_civ"]) == (-0.1, 0.02)


def test_na_warning_cites_the_trap() -> None:
    paper = RewardSettings()  # na_warn 0.5
    assert na_warning(0.5, paper, 4) is None
    msg = na_warning(0.6, paper, 4)
    assert msg is not None and "N/A trap" in msg and "-0.500" in msg and "1/4" in msg
    # A civilian guesses among 3 others: 1/3 - 2/3 = -0.333 > -0.5, so guessing still pays.
    msg = na_warning(0.6, paper, 4, voting="civilians")
    assert msg is not None and "guessing still pays" in msg and "-0.333" in msg
    # Five seats: 0.2 - 0.8 = -0.6 < -0.5, the trap is worse.
    assert "N/A trap" in (na_warning(0.9, paper, 5) or "")
    # Shaped: guess 0.25*2.49 - 0.75*0.9 = -0.0525 > N/A -0.30.
    assert "guessing still pays" in (na_warning(0.9, RewardSettings(decision="shaped"), 4) or "")
