"""Train the base stage: supervised next-token loss on scene-graph examples (examples.py).

Algorithm: a randomly initialised tiny Qwen2.5-VL; every step draws `batch_size` fresh
examples (clue / judge / observer, mixed by `base.mix_*`) from the seeded generator,
builds the prompt with the game's own prompt builders and learns the target reply
(loss on the reply tokens only, the end-of-turn token included; mean over each reply's
tokens, then over replies, so a one-word judgement weighs as much as an observer's
checks). AdamW, linear warm-up then cosine decay from `lr` to `min_lr`, grad clip 1;
then optionally a polish at a constant rate with a fresh optimizer (`polish_steps`);
then optionally the vote prior (`vote_prior_steps`): observer examples whose vote names the
one flagged seat with probability `vote_prior` (else a random seat), the answer tokens' loss
added to the reply's, plus half a batch of the usual mix so the other skills stay.
Off by default: an experiment toward a base whose vote is weakly skilled, as a pretrained
VLM's is; so far it keeps the other skills but forms no vote circuit (docs/learning.md).
Then the held-out skills are measured greedily (skills.py) and everything is saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from visionzero.base.examples import KINDS, SUMMARY, Example, Kind, make_example, sample_kind
from visionzero.models.loading import LoadedModel
from visionzero.rollout.images import message_images
from visionzero.settings import Settings
from visionzero.train.batch import BOX, collate, completion_logits
from visionzero.train.loss import token_logprobs
from visionzero.train.samples import TrainSample
from visionzero.train.update import cosine_with_warmup

Log = Callable[[str], None]


def encode(examples: Sequence[Example], loaded: LoadedModel) -> list[TrainSample]:
    """Examples -> samples: prompt ids with expanded image tokens, reply ids + end of turn."""
    processor, tokenizer = loaded.processor, loaded.tokenizer
    texts = [processor.apply_chat_template(e.messages, tokenize=False, add_generation_prompt=True) for e in examples]
    images = [message_images(e.messages) for e in examples]
    enc = processor(text=texts, images=[i for imgs in images for i in imgs], padding=True, return_tensors="pt")
    eot = loaded.end_of_turn_id
    out = []
    for row, (e, imgs) in enumerate(zip(examples, images)):
        prompt = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
        reply = tokenizer(e.target, add_special_tokens=False)["input_ids"] + [eot]
        out.append(TrainSample(prompt, reply, imgs, advantage=0.0, stage="clue"))
    return out


def reply_loss(model, batch) -> torch.Tensor:
    """Mean over replies of the mean negative log-likelihood of each reply's tokens; with an
    answer mask, plus the same mean over its answer tokens alone (the vote, undiluted by the
    ~50 reasoning tokens, while the reasoning keeps its own loss)."""
    nll = -token_logprobs(completion_logits(model, batch), batch.completion_ids)
    mask = batch.completion_mask.float()
    loss = ((nll * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if batch.answer_mask is not None:
        answer = mask * batch.answer_mask.float()
        loss = loss + ((nll * answer).sum(-1) / answer.sum(-1).clamp(min=1)).mean()
    return loss


def example_stream(settings: Settings, seed_parts: Sequence[int], kind: Kind | None = None, vote_prior: float = 0.0,
                   summary: bool = False):
    """An endless, seeded stream of examples: mixed by `base.mix_*`, or all of `kind`."""
    rng = np.random.default_rng([settings.base.seed, *seed_parts])
    p = settings.pairs
    while True:
        k = kind or sample_kind(rng, settings.base)
        yield make_example(rng, k, settings.base, p.clevr, settings.game, p.image_size, vote_prior, summary)


def train_base(loaded: LoadedModel, settings: Settings, log: Log | None = None, log_every: int = 100) -> list[dict]:
    """Train `loaded.model` in place; returns the loss curve (one row per `log_every` steps).

    Phase 1: `base.steps` steps, warm-up then cosine from `lr` to `min_lr`. Phase 2 (the
    polish, `base.polish_steps`): a fresh AdamW at the constant `polish_lr` on its own example
    stream, so it depends only on phase 1's weights (a run can be continued exactly).
    """
    base = settings.base
    if base.threads:
        torch.set_num_threads(base.threads)
    torch.manual_seed(base.seed)
    floor = base.min_lr / base.lr
    curve = run_phase(loaded, settings, base.steps, base.lr, lambda s: cosine_with_warmup(s, base.steps, base.warmup_steps, floor),
                      stream_part=1, label="base", log=log, log_every=log_every)  # fmt: skip
    if base.polish_steps:
        curve += polish(loaded, settings, log, log_every)
    if base.vote_prior_steps:
        curve += vote_prior_phase(loaded, settings, log, log_every)
    return curve


def polish(loaded: LoadedModel, settings: Settings, log: Log | None = None, log_every: int = 100) -> list[dict]:
    """Phase 2 alone, from the current weights (see `train_base`)."""
    base = settings.base
    rows = run_phase(loaded, settings, base.polish_steps, base.polish_lr, lambda s: 1.0,
                     stream_part=3, label="polish", log=log, log_every=log_every)  # fmt: skip
    return [{**r, "step": base.steps + r["step"]} for r in rows]


def vote_prior_phase(loaded: LoadedModel, settings: Settings, log: Log | None = None, log_every: int = 100) -> list[dict]:
    """Phase 3 alone, from the current weights (see the module docstring)."""
    base = settings.base
    rows = run_phase(loaded, settings, base.vote_prior_steps, base.polish_lr, lambda s: 1.0, stream_part=4,
                     label="observer phase", log=log, log_every=log_every, kind="observer", vote_prior=base.vote_prior,
                     summary=base.observer_summary)  # fmt: skip
    return [{**r, "step": base.steps + base.polish_steps + r["step"]} for r in rows]


def run_phase(loaded: LoadedModel, settings: Settings, steps: int, lr: float, factor: Callable[[int], float],
              stream_part: int, label: str, log: Log | None, log_every: int, kind: Kind | None = None,
              vote_prior: float = 0.0, summary: bool = False) -> list[dict]:
    """`steps` AdamW steps on fresh examples of stream `stream_part`, lr = lr * factor(step).
    `kind` given: examples of that kind, their answer tokens weighted up (reply_loss), plus
    half as many of the usual mix. `summary`: observer replies (both streams) end their
    reasoning with the summary line, and the weighted tokens start at it (the line and the
    vote) instead of at the vote."""
    base = settings.base
    model = loaded.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    stream = example_stream(settings, [stream_part], kind, vote_prior, summary)
    # A phase on one kind also replays half a batch of the usual mix (plain loss): observer
    # examples alone made the clue turns answer like observers (caption 1.0 -> 0.66 in 400 steps).
    replay = example_stream(settings, [stream_part, 1], summary=summary) if kind else None
    marker = SUMMARY if summary else BOX
    pad = loaded.tokenizer.pad_token_id
    device = next(model.parameters()).device
    curve, window, start = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        focus = [next(stream) for _ in range(base.batch_size)]
        mixed = [next(replay) for _ in range(base.batch_size // 2)] if replay else []
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        # One forward per kind: a judge prompt is ~40 tokens, an observer's ~450, and
        # padding them to one length would triple the cost of the judge examples.
        total = len(focus) + len(mixed)
        for examples, answer_weighted in ((focus, kind is not None), (mixed, False)):
            for each in KINDS:
                group = [e for e in examples if e.kind == each]
                if group:
                    batch = collate(encode(group, loaded), loaded.processor, pad, device, with_answer_mask=answer_weighted,
                                    answer_marker=marker)  # fmt: skip
                    part = reply_loss(model, batch) * (len(group) / total)
                    part.backward()
                    loss += float(part.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        window.append(loss)
        if step % log_every == 0 or step == steps:
            row = {"step": step, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0],
                   "seconds": round(time.perf_counter() - start, 1)}
            curve.append(row)
            window = []
            if log:
                log(f"{label} step {step}/{steps}: loss {row['loss']:.4f}, lr {row['lr']:.2e}, {row['seconds']:.0f} s")
    model.eval()
    return curve
