"""Update throughput: the policy update vs a raw forward+backward, and batched log-probs.

Side by side on the same tiny model and the same samples (real completions of clue prompts):
  update      PolicyTrainer.step: log-probs, frozen-reference KL, clipped PG loss, AdamW step
  raw         one forward + backward over exactly the same padded micro-batches (a plain
              sum of log-probs as the loss): what any update must pay at least
  batched lp  no-grad log-probs of all samples, one forward per micro-batch
  one-by-one  the same log-probs one sample at a time (the released code's pattern)
  votes       PolicyTrainer.step on the vote samples of real games (G completions of one
              observer prompt each), with train.share_prompts on vs off, and with shared
              prompts run under no_grad (train.prompt_grad=false)
Goals: update tokens/s >= 0.6 x raw; batched log-probs much faster than one-by-one; shared
vote prompts >= 2x faster than padded copies (at G = 8; the micro profile plays G = 2);
detached prompts >= 1.2x faster than shared (8 games; a whole decision update of the micro
profile with its clue anchors: 6.2 s -> 3.9 s, docs/learning.md section 12).
Tokens counted = prompt + completion tokens processed.

    python bench/bench_update.py [--samples 64] [--json bench/results/update.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import report, timed  # noqa: I001

from tests.helpers import simple_pairs
from visionzero.base.stage import starting_spec
from visionzero.game import clue_request
from visionzero.models import load_model
from visionzero.rl.advantages import RaeState
from visionzero.rollout.engine import GameEngine, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Sampling
from visionzero.settings import load_settings
from visionzero.train.batch import collate, completion_logits
from visionzero.train.loss import token_logprobs
from visionzero.train.samples import TrainSample, score_games, training_samples
from visionzero.train.update import PolicyTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--json", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="settings override, e.g. runtime.threads=2")
    args = parser.parse_args()

    s = load_settings(str(Path(__file__).parents[1] / "params.yaml"), ["train.micro_batch_size=16", *args.overrides])
    loaded = load_model(s.model, s.runtime, spec=starting_spec(s))
    games = setup_games(simple_pairs(Path(tempfile.mkdtemp()), args.samples), s.game, seed=0)
    requests = [clue_request(g, 1, 1) for g in games]
    out = HFPolicy(loaded).generate(requests, Sampling(32, 1.0), seed=0)
    samples = [
        TrainSample(c.prompt_token_ids, c.token_ids, [r.images[0]], 1.0 if i % 2 else -1.0, "clue")
        for i, (r, (c,)) in enumerate(zip(requests, out))
    ]
    tokens = sum(len(x.prompt_ids) + len(x.completion_ids) for x in samples)
    trainer = PolicyTrainer(loaded, s.train)
    trainer.step(samples[:4], "clue")  # warm-up
    metrics, t_update = timed(trainer.step, samples, "clue")

    model, pad = trainer.model, loaded.tokenizer.pad_token_id

    def raw():
        model.zero_grad(set_to_none=True)
        for micro in trainer._micro_batches(samples):
            batch = collate(micro, loaded.processor, pad, "cpu")
            lp = token_logprobs(completion_logits(model, batch), batch.completion_ids)
            (lp * batch.completion_mask).sum().backward()

    _, t_raw = timed(raw)

    @torch.no_grad()
    def logprobs(groups):
        for group in groups:
            batch = collate(group, loaded.processor, pad, "cpu")
            token_logprobs(completion_logits(model, batch), batch.completion_ids)

    _, t_batched = timed(logprobs, trainer._micro_batches(samples))
    _, t_single = timed(logprobs, [[x] for x in samples])

    # The vote stage: the G completions of each game share one long observer prompt.
    games = setup_games(simple_pairs(Path(tempfile.mkdtemp()), 8), s.game, seed=1)
    GameEngine(HFPolicy(loaded), s.game).play(games, seed=0)
    scored = score_games(games, s.rewards, RaeState())
    votes = [v if v.advantage else TrainSample(**{**v.__dict__, "advantage": 1.0}) for v in training_samples(games, scored, "decision")]
    vote_times = {}
    for share, prompt_grad in ((False, True), (True, True), (True, False)):
        trainer.share_prompts, trainer.settings = share, trainer.settings.model_copy(update={"prompt_grad": prompt_grad})
        trainer.step(votes[: s.game.group_size], "decision")  # warm-up
        _, vote_times[share, prompt_grad] = timed(trainer.step, votes, "decision")
    report("update", {
        "samples": len(samples), "tokens": tokens, "micro_batch_size": s.train.micro_batch_size,
        "update tokens/s": tokens / t_update, "raw fwd+bwd tokens/s": tokens / t_raw,
        "update / raw": t_raw / t_update,
        "batched log-probs tokens/s": tokens / t_batched, "one-by-one log-probs tokens/s": tokens / t_single,
        "batched / one-by-one": t_single / t_batched, "kl after step": metrics.kl,
        "vote samples": len(votes), "vote update s (copies)": vote_times[False, True], "vote update s (shared)": vote_times[True, True],
        "shared / copies": vote_times[False, True] / vote_times[True, True],
        "vote update s (shared, detached prompts)": vote_times[True, False],
        "detached / shared": vote_times[True, True] / vote_times[True, False],
    }, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
