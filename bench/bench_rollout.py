"""Rollout throughput: the batched game engine vs the official one-at-a-time pattern.

Measured side by side on the same tiny model, the same pairs, the same settings and the
same token budget (completions of a random model almost always run to max_new_tokens):
  (a) batched engine: every (round, seat) turn of all B games in one generate call,
      then all B x G votes in one call;
  (b) official pattern: one game at a time, one player at a time (the G votes of a game
      in one call, as the released code samples them);
  (c) upper bound: plain batched generate over exactly the prompts (a) produced, with no
      game logic, parsing or recording;
  (d) the batched engine without the image cache (every call processes and encodes its
      images again, as before `models/image_cache.py`): (a)/(d) is what the cache buys.
Goals: (a)/(b) >= 10x at 32 games; (a)/(c) >= 0.8; (a)/(d) > 1. Also printed: prefill and decode-step
times at batch 1 and batch B, which bound what batching can gain on this machine.

    python bench/bench_rollout.py [--games 32] [--json bench/results/rollout.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import report, timed  # noqa: I001  (bench/ is run as scripts)

from tests.helpers import simple_pairs
from visionzero.base.stage import starting_spec
from visionzero.game import (
    clue_request,
    clue_turn_order,
    decision_requests,
    record_clue,
    record_votes,
)
from visionzero.models import load_model
from visionzero.models.image_cache import IMAGES
from visionzero.rollout.engine import GameEngine, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Sampling
from visionzero.settings import load_settings


def official_pattern(policy, games, settings) -> int:
    """One game at a time, one player at a time; returns generated tokens."""
    tokens = 0
    clue = Sampling.from_settings(settings.clue)
    for k, game in enumerate(games):
        for round_, seat in clue_turn_order(settings):
            ((c,),) = policy.generate([clue_request(game, round_, seat)], clue, seed=k)
            record_clue(game, round_, seat, c.text)
            tokens += len(c.token_ids)
        (request,) = decision_requests(game)
        (votes,) = policy.generate([request], Sampling.from_settings(settings.decision, n=request.n_samples), seed=k)
        record_votes(game, [v.text for v in votes])
        tokens += sum(len(v.token_ids) for v in votes)
    return tokens


def decode_step_ms(policy, requests, steps: int = 32) -> tuple[float, float]:
    """(prefill, one decode step) in ms for this batch: the ceiling of (a)/(b) in one line.

    Batching divides the per-token cost only where a step is overhead-bound; a prefill is
    compute-bound at any batch size, so it costs (b) and (a) the same per token.
    """
    import torch

    batch, loaded = policy.encode(requests), policy.loaded
    kw = dict(do_sample=True, suppress_tokens=loaded.suppressed_ids, pad_token_id=loaded.tokenizer.pad_token_id)
    with torch.inference_mode():
        _, t1 = timed(loaded.model.generate, **batch, max_new_tokens=1, min_new_tokens=1, **kw)
        _, tn = timed(loaded.model.generate, **batch, max_new_tokens=steps + 1, min_new_tokens=steps + 1, **kw)
    return t1 * 1e3, (tn - t1) / steps * 1e3


class Uncached:
    """Empties the image cache before every call: each batch processes and encodes its images."""

    def __init__(self, inner):
        self.inner = inner

    def generate(self, requests, sampling, seed=0):
        IMAGES.clear()
        return self.inner.generate(requests, sampling, seed)


class Recorder:
    """Passes batches through and keeps them, to replay the same prompts in (c)."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def generate(self, requests, sampling, seed=0):
        self.batches.append((list(requests), sampling, seed))
        return self.inner.generate(requests, sampling, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--official-games", type=int, default=8, help="games for (b); its rate is per game")
    parser.add_argument("--json", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="settings override, e.g. runtime.threads=2")
    args = parser.parse_args()

    # the configured game and budgets (params.yaml); --set changes them for both sides at once
    s = load_settings(str(Path(__file__).parents[1] / "params.yaml"), args.overrides)
    loaded = load_model(s.model, s.runtime, spec=starting_spec(s))
    policy = HFPolicy(loaded, micro_batch_size=256)
    pairs = simple_pairs(Path(tempfile.mkdtemp()), args.games)

    GameEngine(policy, s.game).play(setup_games(pairs[:2], s.game, seed=1), 0)  # warm-up: first-call costs, image cache
    recorder = Recorder(policy)
    games = setup_games(pairs, s.game, seed=0)
    IMAGES.clear()  # (a) pays for its images once, as a rollout of new pairs does
    stats, t_a = timed(GameEngine(recorder, s.game).play, games, 0)

    def replay():
        return sum(len(c.token_ids) for reqs, sampling, seed in recorder.batches
                   for cs in policy.generate(reqs, sampling, seed) for c in cs)  # fmt: skip

    tokens_c, t_c = timed(replay)
    again = setup_games(pairs, s.game, seed=0)
    _, t_d = timed(GameEngine(Uncached(policy), s.game).play, again, 0)
    few = setup_games(pairs[: args.official_games], s.game, seed=0)
    tokens_b, t_b = timed(official_pattern, policy, few, s.game)

    first_turn = recorder.batches[0][0]  # the first speakers' prompts of all games
    decode_step_ms(policy, first_turn[:1], 4)  # warm-up
    (p1, d1), (pb, db) = decode_step_ms(policy, first_turn[:1]), decode_step_ms(policy, first_turn)

    games_a, games_b = args.games / t_a, args.official_games / t_b
    report("rollout", {
        "games (a, c)": args.games, "games (b)": args.official_games,
        "(a) batched engine games/s": games_a, "(a) tokens/s": stats.generated_tokens / t_a,
        "(b) one-at-a-time games/s": games_b, "(b) tokens/s": tokens_b / t_b,
        "(c) plain batched generate tokens/s": tokens_c / t_c,
        "(a)/(b) games/s": games_a / games_b,
        "(a)/(c) tokens/s": (stats.generated_tokens / t_a) / (tokens_c / t_c),
        "(d) engine without the image cache games/s": args.games / t_d,
        "(a)/(d) games/s": t_d / t_a,
        "prefill ms, batch 1": p1, f"prefill ms, batch {len(first_turn)}": pb,
        "decode step ms, batch 1": d1, f"decode step ms, batch {len(first_turn)}": db,
        "decode tokens/s ratio, batch B / batch 1": len(first_turn) * d1 / db,
        "prefill tokens/s ratio, batch B / batch 1": len(first_turn) * p1 / pb,
    }, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
