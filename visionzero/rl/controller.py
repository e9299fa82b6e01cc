"""Iterative-SPO phase controller: which stage (decision or clue) trains next.

Usage, once per training iteration:

    state = initial_state(settings)            # state.stage: stage of iteration 1
    for it in range(1, iterations + 1):
        train(stage=state.stage)               # play the games, update the active stage
        state, switch = step(state, acc_t, na_t, settings)
        if switch: log(switch)                 # state.stage is now the stage of iteration it+1

Semantics, precisely:
- `state.stage` is always the stage of the NEXT iteration to run.
- `step` consumes the statistics of the iteration just run (it ran in `state.stage`):
  t += 1, the EMAs take acc_t and na_t, dwell += 1. So after the step `dwell` counts the
  iterations completed in the current stage, including this one; a switch resets it to 0.
- A `Switch` at `iteration = t` means iterations 1..t ran in `from_stage` (as far as this
  stage goes) and iteration t+1 runs in `to_stage`.

Modes (settings.mode):
- hysteresis (paper Alg. 1): EMAs acc <- rho*acc + (1-rho)*acc_t (same for na), starting at 0.
  decision -> clue when dwell >= k_min and acc >= to_clue_acc and na <= to_clue_na;
  clue -> decision when dwell >= k_min and (1 - acc >= to_decision_err or na >= to_decision_na).
  bias_correction compares acc / (1 - rho^t) and na / (1 - rho^t) instead (Adam-style), so a
  constant signal is seen at its true level from the first iteration. patience > 0 forces a
  switch once dwell reaches patience even if the thresholds do not hold (k_min does not
  apply to this forced switch).
- alternate (released code): switch every `period` iterations.
- clue_only / decision_only (ablations): never switch; the EMAs are still tracked for logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from visionzero.settings.schema import PhaseSettings

Stage = Literal["decision", "clue"]
_OTHER: dict[str, Stage] = {"decision": "clue", "clue": "decision"}


@dataclass(frozen=True)
class Switch:
    """One stage change, decided after iteration `iteration` (1-based).

    acc_ema / na_ema: the raw EMAs after that iteration; acc_used / na_used: the values the
    rule compared (bias-corrected when that option is on, else equal to the EMAs).
    """

    iteration: int
    from_stage: Stage
    to_stage: Stage
    reason: str
    acc_ema: float
    na_ema: float
    acc_used: float
    na_used: float


@dataclass(frozen=True)
class PhaseState:
    """Controller state; see the module docstring for the exact meaning of each counter.

    stage: the stage of the next iteration. t: iterations observed so far.
    dwell: iterations completed in the current stage. switches: every switch so far.
    """

    stage: Stage
    acc_ema: float = 0.0
    na_ema: float = 0.0
    t: int = 0
    dwell: int = 0
    switches: tuple[Switch, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["switches"] = [asdict(s) for s in self.switches]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseState:
        stage = data["stage"]
        if stage not in _OTHER:
            raise ValueError(f"unknown stage {stage!r} in saved phase state")
        return cls(
            stage=stage,
            acc_ema=float(data["acc_ema"]),
            na_ema=float(data["na_ema"]),
            t=int(data["t"]),
            dwell=int(data["dwell"]),
            switches=tuple(Switch(**s) for s in data.get("switches", ())),
        )


def initial_state(settings: PhaseSettings) -> PhaseState:
    """State before iteration 1: the ablation modes pin their stage, others use settings.start."""
    if settings.mode == "clue_only":
        return PhaseState(stage="clue")
    if settings.mode == "decision_only":
        return PhaseState(stage="decision")
    return PhaseState(stage=settings.start)


def _decide(state: PhaseState, acc: float, na: float, s: PhaseSettings) -> str | None:
    """Reason to leave `state.stage` after this iteration, or None to stay."""
    if s.mode == "alternate":
        return (
            f"alternate: {state.dwell} iterations (period {s.period})"
            if state.dwell >= s.period
            else None
        )
    if s.mode != "hysteresis":
        return None
    if state.dwell >= s.k_min:
        if state.stage == "decision" and acc >= s.to_clue_acc and na <= s.to_clue_na:
            return f"spy easy to find: acc {acc:.3f} >= {s.to_clue_acc} and na {na:.3f} <= {s.to_clue_na}"
        if state.stage == "clue" and (1.0 - acc >= s.to_decision_err or na >= s.to_decision_na):
            return (
                f"spy hard to find: err {1.0 - acc:.3f} >= {s.to_decision_err} "
                f"or na {na:.3f} >= {s.to_decision_na}"
            )
    if s.patience and state.dwell >= s.patience:
        return f"patience: {state.dwell} iterations in {state.stage}"
    return None


def step(
    state: PhaseState, acc_t: float, na_t: float, settings: PhaseSettings
) -> tuple[PhaseState, Switch | None]:
    """Feed one iteration's vote accuracy and N/A share; return the new state and the switch.

    Pure: `state` is not modified. acc_t and na_t are fractions in [0, 1].
    """
    for name, value in (("acc_t", acc_t), ("na_t", na_t)):
        if not 0.0 <= value <= 1.0:  # also rejects NaN
            raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
    rho = settings.rho
    t = state.t + 1
    acc_ema = rho * state.acc_ema + (1.0 - rho) * acc_t
    na_ema = rho * state.na_ema + (1.0 - rho) * na_t
    scale = 1.0 / (1.0 - rho**t) if settings.bias_correction else 1.0
    acc_used, na_used = acc_ema * scale, na_ema * scale
    new = replace(state, acc_ema=acc_ema, na_ema=na_ema, t=t, dwell=state.dwell + 1)
    reason = _decide(new, acc_used, na_used, settings)
    if reason is None:
        return new, None
    switch = Switch(t, new.stage, _OTHER[new.stage], reason, acc_ema, na_ema, acc_used, na_used)
    return replace(new, stage=switch.to_stage, dwell=0, switches=new.switches + (switch,)), switch


class PhaseController:
    """A small stateful wrapper around `step` for training loops."""

    def __init__(self, settings: PhaseSettings, state: PhaseState | None = None) -> None:
        self.settings = settings
        self.state = state if state is not None else initial_state(settings)

    @property
    def stage(self) -> Stage:
        """Stage of the next iteration."""
        return self.state.stage

    def update(self, acc_t: float, na_t: float) -> Switch | None:
        """Record one iteration's statistics; return the switch it caused, if any."""
        self.state, switch = step(self.state, acc_t, na_t, self.settings)
        return switch
