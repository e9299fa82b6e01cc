"""Iterative-SPO phase controller: scripted statistics give exactly the switches the rule implies."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from typing import Any

import pytest

from visionzero.rl.controller import PhaseController, PhaseState, initial_state, step
from visionzero.settings.schema import PhaseSettings

RHO = 0.95


def run(
    settings: PhaseSettings, stats: Sequence[tuple[float, float]], state: PhaseState | None = None
):
    """Stages used by each iteration, the switches, and the final state."""
    state = state or initial_state(settings)
    stages, switches = [], []
    for acc, na in stats:
        stages.append(state.stage)
        state, sw = step(state, acc, na, settings)
        if sw:
            switches.append(sw)
    return stages, switches, state


def test_hysteresis_needs_45_perfect_iterations_from_zero_emas() -> None:
    s = PhaseSettings()
    # acc EMA after t perfect iterations is 1 - 0.95^t; it first reaches 0.9 when 0.95^t <= 0.1.
    t_up = math.ceil(math.log(0.1) / math.log(RHO))
    assert t_up == 45
    stages, switches, state = run(s, [(1.0, 0.0)] * 95)
    assert [(w.iteration, w.from_stage, w.to_stage) for w in switches] == [(45, "decision", "clue")]
    assert switches[0].acc_ema == pytest.approx(1 - RHO**45) and switches[0].na_ema == 0.0
    assert stages == ["decision"] * 45 + ["clue"] * 50
    assert (state.t, state.dwell) == (95, 50)
    # Now the spy becomes impossible to find: acc decays as (1 - 0.95^95) * 0.95^k, and the
    # rule fires once 1 - acc >= 0.4 (dwell is far above k_min by then).
    a95 = 1 - RHO**95
    k_down = next(k for k in range(1, 100) if a95 * RHO**k <= 0.6)
    assert k_down == 10
    _, more, _ = run(s, [(0.0, 0.0)] * 30, state)
    assert [(w.iteration, w.from_stage, w.to_stage) for w in more] == [
        (95 + k_down, "clue", "decision")
    ]
    assert more[0].acc_ema == pytest.approx(a95 * RHO**k_down)


def test_k_min_blocks_an_early_switch_under_bias_correction() -> None:
    s = PhaseSettings(bias_correction=True)
    # Corrected acc is exactly 1 from t=1, so only k_min = 5 holds the switch back.
    _, up, state = run(s, [(1.0, 0.0)] * 5)
    assert [(w.iteration, w.to_stage) for w in up] == [(5, "clue")]
    assert up[0].acc_used == pytest.approx(1.0) and up[0].acc_ema == pytest.approx(1 - RHO**5)

    # Then acc_t = 0: at t = 5 + k, corrected acc = 0.95^k (1 - 0.95^5) / (1 - 0.95^(5+k)).
    def corrected(k: int) -> float:
        return RHO**k * (1 - RHO**5) / (1 - RHO ** (5 + k))

    assert corrected(2) > 0.6 >= corrected(3)  # the threshold already holds at dwell 3 ...
    _, down, _ = run(s, [(0.0, 0.0)] * 10, state)
    assert [(w.iteration, w.to_stage) for w in down] == [
        (10, "decision")
    ]  # ... but k_min waits to 5
    assert down[0].acc_used == pytest.approx(corrected(5))


def test_decision_to_clue_needs_low_na() -> None:
    s = PhaseSettings(bias_correction=True, to_clue_acc=0.5)
    assert run(s, [(0.6, 0.3)] * 40)[1] == []  # corrected na 0.3 > 0.1
    assert [w.iteration for w in run(s, [(0.6, 0.05)] * 40)[1]][:1] == [5]


def test_clue_to_decision_on_na_alone() -> None:
    s = PhaseSettings(bias_correction=True, start="clue", to_decision_err=0.9)
    # err 0.7 < 0.9, but corrected na 0.6 >= 0.5.
    _, switches, _ = run(s, [(0.3, 0.6)] * 5)
    assert [(w.iteration, w.from_stage, w.to_stage) for w in switches] == [(5, "clue", "decision")]
    assert run(s, [(0.3, 0.4)] * 5)[1] == []


def test_patience_forces_switches() -> None:
    stats = [(0.5, 0.0)] * 100
    # acc EMA stays below 0.5: never easy enough to leave decision on its own.
    assert run(PhaseSettings(), stats)[1] == []
    _, switches, _ = run(PhaseSettings(patience=20), stats)
    # decision is forced out after 20 iterations; clue (err >= 0.5 >= 0.4) leaves at k_min = 5.
    assert [w.iteration for w in switches] == [20, 25, 45, 50, 70, 75, 95, 100]
    assert ["patience" in w.reason for w in switches] == [True, False] * 4
    # A forced switch ignores k_min.
    _, short, _ = run(PhaseSettings(patience=3, k_min=5), stats[:12])
    assert [w.iteration for w in short] == [3, 6, 9, 12]


@pytest.mark.parametrize("period", [1, 3])
def test_alternate(period: int) -> None:
    rng = random.Random(period)
    stats = [(rng.random(), 0.0) for _ in range(12)]  # the statistics do not matter
    stages, switches, _ = run(PhaseSettings(mode="alternate", period=period), stats)
    assert stages == [("decision", "clue")[(i // period) % 2] for i in range(12)]
    assert [w.iteration for w in switches] == list(range(period, 13, period))


def test_alternate_can_start_in_clue() -> None:
    stages, _, _ = run(PhaseSettings(mode="alternate", start="clue"), [(0.0, 0.0)] * 4)
    assert stages == ["clue", "decision", "clue", "decision"]


@pytest.mark.parametrize("mode, stage", [("clue_only", "clue"), ("decision_only", "decision")])
def test_single_stage_modes_never_switch(mode: str, stage: str) -> None:
    rng = random.Random(0)
    stats = [(rng.choice([0.0, 1.0]), rng.choice([0.0, 1.0])) for _ in range(200)]
    for start in ("decision", "clue"):
        settings = PhaseSettings(mode=mode, start=start, bias_correction=True, patience=3, k_min=1)
        stages, switches, state = run(settings, stats)
        assert switches == [] and set(stages) == {stage}
        assert state.dwell == 200  # EMAs and counters still advance for the logs
    assert state.acc_ema == pytest.approx(
        sum((1 - RHO) * RHO ** (199 - i) * a for i, (a, _) in enumerate(stats))
    )


def test_save_and_restore_mid_sequence_gives_the_same_future() -> None:
    s = PhaseSettings(bias_correction=True, patience=9)
    rng = random.Random(7)
    stats = []
    for _ in range(80):
        acc = rng.random()
        stats.append((acc, rng.random() * (1 - acc)))
    _, head, mid = run(s, stats[:37])
    restored = PhaseState.from_dict(json.loads(json.dumps(mid.to_dict())))
    assert restored == mid and restored.switches == tuple(head)
    _, tail_a, end_a = run(s, stats[37:], mid)
    _, tail_b, end_b = run(s, stats[37:], restored)
    assert tail_a == tail_b and end_a == end_b
    assert len(head) > 0 and len(tail_a) > 0  # both halves really switch


def test_step_is_pure_and_reports_the_switch() -> None:
    s = PhaseSettings(mode="alternate")
    state = initial_state(s)
    new, sw = step(state, 0.25, 0.5, s)
    assert state == PhaseState(stage="decision")  # untouched
    assert sw is not None and (sw.iteration, sw.from_stage, sw.to_stage) == (1, "decision", "clue")
    emas = ((1 - RHO) * 0.25, (1 - RHO) * 0.5)
    assert (sw.acc_ema, sw.na_ema) == pytest.approx(emas) and (
        sw.acc_used,
        sw.na_used,
    ) == pytest.approx(emas)
    assert (new.stage, new.t, new.dwell, new.switches) == ("clue", 1, 0, (sw,))


def test_controller_wrapper_matches_step() -> None:
    s = PhaseSettings(bias_correction=True)
    ctl = PhaseController(s)
    seen: list[Any] = []
    for _ in range(6):
        seen.append(ctl.stage)
        ctl.update(1.0, 0.0)
    assert seen == ["decision"] * 5 + ["clue"]
    assert ctl.state == run(s, [(1.0, 0.0)] * 6)[2]


@pytest.mark.parametrize("acc, na", [(1.5, 0.0), (0.5, -0.1), (float("nan"), 0.0)])
def test_bad_statistics_raise(acc: float, na: float) -> None:
    with pytest.raises(ValueError):
        step(initial_state(PhaseSettings()), acc, na, PhaseSettings())
