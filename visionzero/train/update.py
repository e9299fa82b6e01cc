"""The policy update: one optimizer step per slice of an iteration's active-stage samples.

For each micro-batch: one forward over prompt + completion (with images) gives the token
log-probs; a no-grad forward of the frozen reference gives the KL anchor; `clipped_pg_loss`
(loss.py, the only place the objective is written) turns them into a loss whose gradients
accumulate across micro-batches. Then grad clip, AdamW, cosine-with-warmup schedule.
Only samples of the active stage are trained; the caller passes the stage and samples of
the other stage are dropped here, so a loss-mask bug like the released code's (decision
samples trained in clue steps) cannot happen.

Runs under `accelerate` (backward, clipping and device placement go through it), so the
same code can be launched on several processes.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch

from visionzero.models.loading import LoadedModel
from visionzero.settings.schema import TrainSettings
from visionzero.train.batch import collate, completion_logits, prompt_runs
from visionzero.train.loss import (
    clipped_pg_loss,
    expected_vote_loss,
    forward_kl,
    token_entropy,
    token_logprobs,
)
from visionzero.train.samples import Stage, TrainSample


@dataclass
class UpdateMetrics:
    stage: str
    samples: int
    tokens: int
    loss: float
    kl: float
    clip_frac: float
    entropy: float
    grad_norm: float
    lr: float
    completion_len: float
    seconds: float
    anchors: int = 0  # other-stage completions that added only the KL term

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self, prefix: str = "update/") -> dict[str, float]:
        data = {k: v for k, v in self.__dict__.items() if k != "stage"}
        data["tokens_per_s"] = self.tokens_per_s
        return {f"{prefix}{k}": float(v) for k, v in data.items()}


def cosine_with_warmup(step: int, total: int, warmup: int, floor: float = 0.0) -> float:
    """LR multiplier: linear warm-up to 1 over `warmup` steps, then cosine decay to `floor`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _slice(items: Sequence, k: int, n: int) -> Sequence:
    """The k-th of n contiguous, nearly equal slices of `items`."""
    return items[k * len(items) // n : (k + 1) * len(items) // n]


def step_slices(samples: Sequence[TrainSample], n: int, mix: str) -> list[list[TrainSample]]:
    """Split an iteration's samples into the n optimizer steps' shares.

    mix "groups": n contiguous slices, so a game's group (its G completions of one prompt)
    stays on one step and shares its prompt whole; each step then sees only 1/n of the games.
    mix "games": every step gets a 1/n share of every group (singletons dealt round-robin), so
    each step is a sample of all the iteration's games. With few games a step, the spies'
    seats of those games dominate the vote's gradient and the dependence on the reasoning
    never forms (docs/learning.md: 2 games a step learn nothing in 300 steps, 16 learn it).
    """
    if mix == "groups":
        return [list(_slice(samples, k, n)) for k in range(n)]
    out: list[list[TrainSample]] = [[] for _ in range(n)]
    for r, run in enumerate(prompt_runs(samples)):  # the rotation spreads short runs' leftovers over the steps
        for k in range(n):
            out[(k + r) % n].extend(_slice(run, k, n))
    return out


def seat_token_ids(tokenizer, n: int) -> list[int]:
    """The token id of each seat's number 1..n (the vote's digit); each must be one token."""
    ids = [tokenizer(str(k), add_special_tokens=False)["input_ids"] for k in range(1, n + 1)]
    if any(len(i) != 1 for i in ids):
        raise ValueError("train.vote_gradient=expected needs each seat number to be one token")
    return [i[0] for i in ids]


def share_of(items: Sequence, share: float, seed: int) -> list:
    """A random `share` of `items` (at least one when there are any), drawn from `seed` and
    kept in their order so a game's turns stay together; share 1 returns them all."""
    if share >= 1.0 or not items:
        return list(items)
    k = max(1, round(len(items) * share))
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), k))]


class PolicyTrainer:
    """Owns the trainable policy, the frozen reference, the optimizer and the schedule."""

    def __init__(self, loaded: LoadedModel, train: TrainSettings, accelerator=None, reference=None, seed: int = 0):
        """`reference`: the frozen starting model for the KL term (default: a copy of `loaded`)."""
        from accelerate import Accelerator

        self.loaded = loaded
        self.settings = train
        device = next(loaded.model.parameters()).device
        self.accelerator = accelerator or Accelerator(cpu=device.type == "cpu")
        model = loaded.model
        if train.lora.enabled and not hasattr(model, "peft_config"):  # (a resumed run arrives wrapped)
            from peft import LoraConfig, get_peft_model

            lora = train.lora
            with torch.random.fork_rng(devices=[]):  # adapter init from the run's seed, not the RNG's history
                torch.manual_seed(seed)
                model = get_peft_model(
                    model,
                    LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules),
                )
        use_ckpt = train.gradient_checkpointing == "on" or (train.gradient_checkpointing == "auto" and device.type == "cuda")
        if use_ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # A shared prompt runs once through a KV cache, which checkpointed layers do not keep.
        self.share_prompts = train.share_prompts and not use_ckpt
        if not train.prompt_grad and use_ckpt:
            raise ValueError("train.prompt_grad=false runs completions on the prompt's KV cache, which gradient "
                             "checkpointing does not keep: set train.gradient_checkpointing=off")  # fmt: skip
        self._seat_ids: torch.Tensor | None = None  # the seat digits' token ids (vote_gradient=expected)
        # The reference is the starting policy. With LoRA it is the same network with the
        # adapters switched off (no second copy in memory); without, a frozen deep copy.
        self.ref_model = None
        if self._needs_reference(train) and not train.lora.enabled:
            ref = reference if reference is not None else copy.deepcopy(loaded.model)
            self.ref_model = ref.eval().requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        total = train.iterations * train.steps_per_iteration * train.epochs
        warmup = int(round(train.warmup_ratio * total))
        floor = train.min_lr_ratio
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, total, warmup, floor))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.model.train()
        self.pad_id = loaded.tokenizer.pad_token_id

    @property
    def device(self):
        return self.accelerator.device

    def _ref_context(self):
        if self.settings.lora.enabled:
            return self.accelerator.unwrap_model(self.model).disable_adapter()
        return nullcontext()

    @staticmethod
    def _needs_reference(train: TrainSettings) -> bool:
        return train.kl_beta > 0 or train.reasoning_keep > 0 or train.vote_keep > 0

    def _ref_logits(self, batch) -> torch.Tensor | None:
        """The frozen reference's completion logits, when the KL or a keep needs them."""
        if not self._needs_reference(self.settings):
            return None
        with torch.no_grad(), self._ref_context():
            ref = self.ref_model if self.ref_model is not None else self.model
            return completion_logits(ref, batch)

    def _micro_batches(self, samples: Sequence[TrainSample]) -> list[list[TrainSample]]:
        """Group by temperature (one T per forward), then chunk by micro_batch_size (in game
        order, so a size that is a multiple of G keeps each game's votes on one shared prompt)."""
        size = self.settings.micro_batch_size
        groups: dict[float, list[TrainSample]] = {}
        for s in samples:
            groups.setdefault(s.temperature, []).append(s)
        return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]

    def step(self, samples: Sequence[TrainSample], stage: Stage, anchors: Sequence[TrainSample] = ()) -> UpdateMetrics:
        """Train on the `stage` samples (the others are ignored): `epochs` passes over them,
        each of `steps_per_iteration` steps.

        `anchors` (train.anchor_inactive): completions of the other stage that add only the
        KL term (advantage 0, so no policy gradient), weighted per sequence like the active
        ones: they hold that stage's outputs near the reference while this one trains.
        """
        start = time.perf_counter()
        active = [s for s in samples if s.stage == stage]
        holds = self.settings.kl_beta > 0 or self.settings.reasoning_keep > 0
        anchors = [replace(s, advantage=0.0) for s in anchors if s.stage != stage] if holds else []
        n_steps, passes = min(self.settings.steps_per_iteration, max(1, len(active))), self.settings.epochs
        if n_steps > 1 or passes > 1:
            # Later steps see a policy that already moved: their ratios need the log-probs
            # of the policy that sampled, so record them before the first step.
            active = self._with_behaviour_logprobs(active)
        slices = step_slices(active, n_steps, self.settings.step_mix)
        totals = dict(loss=0.0, kl=0.0, clipped=0.0, entropy=0.0, grad_norm=0.0)
        seen = max(1, len(active) * passes)  # the metrics are means over every sample a pass saw
        tokens = 0
        for k, part in [(k, part) for _ in range(passes) for k, part in enumerate(slices)]:
            self.optimizer.zero_grad(set_to_none=True)
            for micro in self._micro_batches(part):
                parts, entropy = self._accumulate(micro, n_total=len(part))
                totals["loss"] += float(parts.loss.detach()) / seen
                totals["kl"] += parts.kl / seen
                totals["clipped"] += parts.clipped / seen
                totals["entropy"] += entropy / seen
                tokens += parts.tokens
            for micro in self._micro_batches(_slice(anchors, k, n_steps)) if part else ():
                self._accumulate(micro, n_total=len(part), anchor=True)
            if part:
                norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
                totals["grad_norm"] += float(norm) / (n_steps * passes)
            self.optimizer.step()
            self.scheduler.step()
        tokens //= passes  # the completions' tokens, once
        return UpdateMetrics(
            stage=stage,
            samples=len(active),
            tokens=tokens,
            loss=totals["loss"],
            kl=totals["kl"],
            clip_frac=totals["clipped"],
            entropy=totals["entropy"],
            grad_norm=totals["grad_norm"],
            lr=self.scheduler.get_last_lr()[0],
            completion_len=tokens / max(1, len(active)),
            seconds=time.perf_counter() - start,
            anchors=len(anchors),
        )

    def _votes_in_expectation(self, micro: Sequence[TrainSample]) -> bool:
        """Whether this micro-batch's vote tokens take the expected-reward gradient
        (train.vote_gradient=expected and choice rewards present); looks up the seat digits' ids once."""
        if self.settings.vote_gradient != "expected" or not any(s.choice_rewards for s in micro):
            return False
        if self._seat_ids is None:
            n = max(len(s.choice_rewards) - 1 for s in micro if s.choice_rewards)
            self._seat_ids = torch.tensor(seat_token_ids(self.loaded.tokenizer, n), device=self.device)
        return True

    def _accumulate(self, micro: Sequence[TrainSample], n_total: int, anchor: bool = False):
        weight, keep = self.settings.reasoning_weight, self.settings.reasoning_keep
        # An anchor adds the hold alone: its votes take no expected-reward gradient either.
        expected = not anchor and self._votes_in_expectation(micro)
        batch = collate(
            micro, self.loaded.processor, self.pad_id, self.device,
            with_answer_mask=weight < 1.0 or expected or keep > 0, share_prompts=self.share_prompts,
            prompt_grad=self.settings.prompt_grad,
        )  # fmt: skip
        logits = completion_logits(self.model, batch)
        logp = token_logprobs(logits, batch.completion_ids, batch.temperature)
        old = self._old_logprobs(micro, logp)
        pg_weight = vote_at = voted = None
        if batch.answer_mask is not None:  # credit on the answer, `weight` of it on the reasoning
            answer = batch.answer_mask
            if expected:  # where the box's content begins; 0 = no box (answer_start), no vote term
                has_choices = torch.tensor([s.choice_rewards is not None for s in micro], device=answer.device)
                vote_at = torch.where(has_choices, answer.argmax(-1), torch.zeros_like(has_choices, dtype=torch.long))
                # a vote taken in expectation leaves its answer out of the sampled term
                answer = torch.where((vote_at > 0).unsqueeze(-1), torch.zeros_like(answer), answer)
                voted = (vote_at > 0).nonzero().squeeze(-1)  # the rows whose vote is taken in expectation
            pg_weight = answer + weight * (1 - batch.answer_mask)
        ref_logits = self._ref_logits(batch)
        ref_logp = None
        if ref_logits is not None and self.settings.kl_beta > 0:
            ref_logp = token_logprobs(ref_logits, batch.completion_ids, batch.temperature)
        parts = clipped_pg_loss(
            logp, old, batch.advantages, batch.completion_mask, self.settings.clip_eps,
            ref_logp=ref_logp, kl_beta=self.settings.kl_beta, pg_weight=pg_weight,
        )
        loss = parts.loss
        if voted is not None and len(voted):
            rewards = torch.tensor([micro[i].choice_rewards for i in voted.tolist()], device=logits.device)
            vote_logits = logits[voted, vote_at[voted]]
            loss = loss + expected_vote_loss(vote_logits, self._seat_ids, rewards, batch.temperature, self.settings.vote_std).sum()
            if self.settings.vote_keep > 0:  # a restoring pull not weighted by each seat's own p
                ref_votes = ref_logits[voted, vote_at[voted]].unsqueeze(1)
                ones = torch.ones_like(ref_votes[..., 0])
                digit = forward_kl(vote_logits.unsqueeze(1), ref_votes, ones, batch.temperature)
                loss = loss + self.settings.vote_keep * digit.sum()
        if keep > 0:
            # Held: every token the policy gradient does not train. An anchor trains nothing
            # (its box is what the other stage would rewrite: the votes' digits leaked into
            # clues); a vote taken in expectation trains its digit alone (left free, the "}"
            # after it drifted and 0.5 of the votes came out invalid); a completion without a
            # box has no answer, all of it is reasoning.
            trained = batch.answer_mask * (1 - batch.answer_mask[:, :1])  # no box: answer_start 0, mask all ones
            if voted is not None:
                trained[voted] = 0
                trained[voted, vote_at[voted]] = 1
            held = batch.completion_mask * (1 if anchor else 1 - trained)
            loss = loss + keep * forward_kl(logits, ref_logits, held, batch.temperature).sum()
        # Dividing by the step's sequence count makes the accumulated gradient the gradient
        # of the sequence mean, whatever the micro-batch size.
        self.accelerator.backward(loss / n_total)
        with torch.no_grad():
            ent = token_entropy(logits.detach(), batch.temperature)
            mask = batch.completion_mask.float()
            entropy = float(((ent * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum())
        # the reported loss is all of it: the expected vote term and the keeps included
        return replace(parts, loss=loss.detach()), entropy

    @torch.no_grad()
    def _with_behaviour_logprobs(self, samples: list[TrainSample]) -> list[TrainSample]:
        """Log-probs of the policy as it sampled: eval mode, as generation ran (LoRA dropout
        and any other dropout off), whatever mode training left the model in."""
        missing = [s for s in samples if s.old_logprobs is None]
        done: dict[int, list[float]] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            for micro in self._micro_batches(missing):
                batch = collate(micro, self.loaded.processor, self.pad_id, self.device, share_prompts=self.share_prompts)
                logp = token_logprobs(completion_logits(self.model, batch), batch.completion_ids, batch.temperature)
                for row, s in enumerate(micro):
                    done[id(s)] = logp[row, : len(s.completion_ids)].tolist()
        finally:
            self.model.train(was_training)
        return [s if s.old_logprobs is not None else replace(s, old_logprobs=done[id(s)]) for s in samples]

    @staticmethod
    def _old_logprobs(micro: Sequence[TrainSample], logp: torch.Tensor) -> torch.Tensor:
        """Behaviour log-probs when the sampler recorded them, else the current ones (ratio 1)."""
        old = logp.detach().clone()
        for row, s in enumerate(micro):
            if s.old_logprobs is not None:
                n = min(len(s.old_logprobs), old.shape[1])
                old[row, :n] = torch.tensor(s.old_logprobs[:n], dtype=old.dtype, device=old.device)
        return old
