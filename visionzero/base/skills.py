"""The base stage's held-out skills, measured greedily on examples from their own seed stream.

- `caption_accuracy`: clue turns whose boxed clue names a colour present in the speaker's
  own image (`clue_format_rate`: a valid boxed clue naming a colour at all);
- `judge_accuracy`: yes/no judgements of one clue against an image (chance 0.5);
- `reasoning_accuracy`: observer checks ("Player s: colour yes|no") right against the
  original image, over every clue of every game; `reasoning_recall_false` / `_true`: the
  same over the false / the true clues only (most clues are true: "yes" everywhere scores
  ~0.85 accuracy and 0 recall of false clues); `reasoning_complete_rate`: every check
  emitted, in order; `vote_format_rate`: the observer's box parses as a seat or N/A;
  `vote_follows_flag`: over the games where exactly one seat's clue is false, the share of
  votes naming that seat (0.25 is chance with 4 seats; the vote prior's strength).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from visionzero.base.examples import (
    KINDS,
    Example,
    flagged_seat,
    make_example,
    score_clue,
    score_judge,
    score_observer,
    written_flag,
    written_summary,
)
from visionzero.game.parsing import parse_vote
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Sampling
from visionzero.settings import Settings


def _recall(obs, cls: str) -> float:
    """Share of the clues of class `cls` (true: "yes", false: "no") the observer checked right."""
    right = sum(o[3][cls][0] for o in obs)
    return right / max(1, sum(o[3][cls][1] for o in obs))


@dataclass
class _Request:
    messages: list[dict[str, Any]]


def heldout_examples(settings: Settings, n: int) -> dict[str, list[Example]]:
    """`n` examples of each kind from a seed stream training never draws from."""
    rng = np.random.default_rng([settings.base.seed, 2])
    p = settings.pairs
    return {k: [make_example(rng, k, settings.base, p.clevr, settings.game, p.image_size) for _ in range(n)] for k in KINDS}


def measure_skills(policy: HFPolicy, settings: Settings, n: int | None = None) -> dict[str, float]:
    """Greedy replies to held-out examples, scored against the scene graphs."""
    n = n or settings.base.eval_examples
    examples = heldout_examples(settings, n)
    budget = {"clue": settings.game.clue.max_new_tokens, "judge": 4, "observer": settings.game.decision.max_new_tokens}
    replies = {
        k: [c[0].text for c in policy.generate([_Request(e.messages) for e in ex], Sampling(budget[k], 0.0), seed=0)]
        for k, ex in examples.items()
    }
    colors = settings.pairs.clevr.colors
    clue = [score_clue(t, e, colors) for t, e in zip(replies["clue"], examples["clue"])]
    judge = [score_judge(t, e) for t, e in zip(replies["judge"], examples["judge"])]
    obs = [score_observer(t, e) for t, e in zip(replies["observer"], examples["observer"])]
    votes = [parse_vote(t, settings.game.n_players) for t in replies["observer"]]
    flagged = [flagged_seat(e.truth["seats"], e.truth["checks"]) for e in examples["observer"]]
    follows = [v.kind == "seat" and v.seat == f for v, f in zip(votes, flagged) if f is not None]
    return {
        "caption_accuracy": sum(ok for _, ok in clue) / n,
        "clue_format_rate": sum(f for f, _ in clue) / n,
        "judge_accuracy": sum(ok for _, ok in judge) / n,
        "judge_format_rate": sum(f for f, _ in judge) / n,
        "reasoning_accuracy": sum(o[0] for o in obs) / max(1, sum(o[1] for o in obs)),
        "reasoning_recall_false": _recall(obs, "no"),
        "reasoning_recall_true": _recall(obs, "yes"),
        "reasoning_complete_rate": sum(o[2] for o in obs) / n,
        "vote_format_rate": sum(v.kind in ("seat", "na") for v in votes) / n,
        "vote_follows_flag": sum(follows) / max(1, len(follows)),
        **(_summary_skills(replies["observer"]) if settings.base.observer_summary else {}),
    }


def _summary_skills(replies: list[str]) -> dict[str, float]:
    """`summary_rate`: replies with a summary line; `summary_follows_checks`: over the replies
    whose own checks flag exactly one seat, the share whose summary names it (none: "none")."""
    own = [(written_flag(t), written_summary(t)) for t in replies]
    return {
        "summary_rate": sum(s is not None for _, s in own) / max(1, len(own)),
        "summary_follows_checks": sum((s == f) if f is not None else (s == "none") for f, s in own) / max(1, len(own)),
    }

