"""A Policy that sends each request of a batch to one of several policies.

The win-rate match seats two models in the same games. Routing per request keeps the
engine batched: every turn is still one batch per model (the candidate's share and the
opponent's share), never one call per player.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from visionzero.rollout.types import Completion, Policy, Sampling


class RoutingPolicy:
    """`route(request) -> index` into `policies`; each policy gets its share as one batch.

    Both shares are generated with the same seed; results come back in request order.
    """

    def __init__(self, policies: Sequence[Policy], route: Callable[[Any], int]):
        self.policies = list(policies)
        self.route = route

    def generate(self, requests: Sequence[Any], sampling: Sampling, seed: int = 0) -> list[list[Completion]]:
        shares: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            k = self.route(request)
            if not 0 <= k < len(self.policies):
                raise ValueError(f"route sent request {i} to policy {k}; only {len(self.policies)} exist")
            shares.setdefault(k, []).append(i)
        out: list[list[Completion] | None] = [None] * len(requests)
        for k in sorted(shares):
            chosen = shares[k]
            results = self.policies[k].generate([requests[i] for i in chosen], sampling, seed)
            for i, samples in zip(chosen, results):
                out[i] = samples
        return out  # type: ignore[return-value]  # every slot was filled above
