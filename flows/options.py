"""Typed flow parameters: the knobs a Prefect UI form shows, turned into settings overrides.

params.yaml stays the one source of truth. A knob left empty (None) keeps the file's value;
a knob given becomes a `section.key=value` override placed after the free-form `overrides`,
so the form's field wins over the same key written there.
"""

from __future__ import annotations

from typing import Literal

# As PairsSettings.domains (a test keeps them equal): the form offers a choice, not free text.
Domain = Literal["clevr", "chart", "photo"]

def with_knobs(
    overrides: list[str] | None, iterations: int | None = None, domains: list[str] | None = None, seed: int | None = None
) -> list[str]:
    """`overrides` followed by one override per knob that was given."""
    out = list(overrides or [])
    if iterations is not None:
        out.append(f"train.iterations={int(iterations)}")
    if domains:
        out.append(f"pairs.domains=[{', '.join(domains)}]")
    if seed is not None:
        out.append(f"runtime.seed={int(seed)}")
    return out
