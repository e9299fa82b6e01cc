"""The policy-gradient objective, written once. Pure tensor functions, no model code.

Per completion token t of sequence i (METHOD.md section 5):

    ratio  = exp(logp - old_logp)
    pg     = -min(ratio * A_i, clip(ratio, 1 - eps, 1 + eps) * A_i)
    kl_k3  = exp(ref_logp - logp) - (ref_logp - logp) - 1        (>= 0, unbiased for KL)
    loss_t = pg + beta_kl * kl_k3

averaged over the tokens of each sequence, then over sequences ("token mean, then sequence
mean"), so a long completion weighs no more than a short one.

Credit assignment (`pg_weight`, optional): per-token weights on the policy-gradient term
only; the sequence's pg term becomes the weighted mean sum(w * pg) / sum(w) while the KL
stays a plain token mean. Weights 1 everywhere give the paper's loss exactly. Weight 1 on
the answer (from the last `\boxed` on) and r < 1 on the reasoning puts a vote's advantage
where the vote is decided instead of spreading it over ~50 reasoning tokens
(train.reasoning_weight). Both stages (clue self-play
with role advantages, decision RLVR with group-normalised advantages) use this function;
they differ only in where the advantages come from.

The vote in expectation (`expected_vote_loss`, train.vote_gradient=expected): the decision's
reward is verifiable for EVERY seat, not only the sampled one, so the vote token's gradient
can be the exact gradient of its expected reward, -sum_k pi(seat k) * r_k, instead of the
one-sample estimate A * grad log pi(sampled seat). Same objective, none of the vote's sampling
noise (with 4 seats the sampled estimate is mostly noise until the vote depends on the
reasoning at all). The reasoning tokens keep their sampled, group-normalised advantages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossParts:
    """Per-sequence sums of the loss and its diagnostics (divide by the batch's sequence count)."""

    loss: torch.Tensor  # scalar, differentiable: sum over sequences of the per-sequence token mean
    kl: float  # sum over sequences of mean token k3
    clipped: float  # sum over sequences of the clipped-token share
    tokens: int


def _tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 logits / T, as the sampler saw them (T <= 0, greedy, and T = 1 leave them as they are)."""
    logits = logits.float()
    return logits / temperature if temperature > 0 and temperature != 1.0 else logits


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[token], computed without materialising the full log-softmax.

    logits: [B, T, V]; tokens: [B, T] -> [B, T] float32.
    """
    logits = _tempered(logits, temperature)
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / T) at each position: [B, T, V] -> [B, T]."""
    logits = _tempered(logits, temperature)
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token: exp(d) - d - 1 with d = ref - logp."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def clipped_pg_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    ref_logp: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    pg_weight: torch.Tensor | None = None,
) -> LossParts:
    """Clipped-ratio policy gradient plus k3 KL, token mean then summed over sequences.

    logp, old_logp, ref_logp, mask, pg_weight: [B, T] (mask 1 on completion tokens); advantages: [B].
    Returns sums over the B sequences so micro-batches can be accumulated exactly: the
    caller divides by the total number of sequences in the optimizer step.
    """
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype).unsqueeze(-1)
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg = -torch.minimum(ratio * adv, clipped_ratio * adv)
    lengths = mask.sum(-1).clamp(min=1.0)
    if pg_weight is None:
        per_seq = (pg * mask).sum(-1) / lengths
    else:
        w = pg_weight.to(logp.dtype) * mask
        per_seq = (pg * w).sum(-1) / w.sum(-1).clamp(min=1e-8)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_beta > 0:
        kl = k3_kl(logp, ref_logp)
        per_seq = per_seq + kl_beta * (kl * mask).sum(-1) / lengths
    with torch.no_grad():
        was_clipped = ((ratio - clipped_ratio).abs() > 0).to(logp.dtype)
        kl_seq = (kl * mask).sum(-1) / lengths
        clip_seq = (was_clipped * mask).sum(-1) / lengths
    return LossParts(
        loss=per_seq.sum(),
        kl=float(kl_seq.sum()),
        clipped=float(clip_seq.sum()),
        tokens=int(mask.sum()),
    )


def expected_vote_loss(vote_logits: torch.Tensor, seat_ids: torch.Tensor, choice_rewards: torch.Tensor,
                       temperature: float = 1.0, normalize: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """Minus the expected reward of the vote token, up to a constant, per sequence.

    vote_logits: [B, V], the logits where the box's content begins; seat_ids: [n], the token
    of each seat's digit; choice_rewards: [B, n + 1], the reward of naming seat k, then of any
    other token (N/A, a malformed answer). Since the probabilities sum to one,
    E[r] = r_other + sum_k p_k (r_k - r_other); the constant drops out of the gradient.

    `normalize` (train.vote_std): divide by the reward's standard deviation under the policy,
    std_{k ~ pi}(r_k) + eps, held constant: GRPO's group normalisation (r - mean) / (std + eps)
    taken in expectation instead of over G samples. The gradient on the right seat's logit
    becomes ~sqrt(q (1 - q)) instead of 2 q (1 - q) (q = its probability), so a seat the vote
    has nearly abandoned still gets a push back when it is right. Returns [B].
    """
    p = torch.softmax(_tempered(vote_logits, temperature), dim=-1)[:, seat_ids]
    rewards = choice_rewards.to(p.dtype)
    gain = rewards[:, :-1] - rewards[:, -1:]
    loss = -(p * gain).sum(-1)
    if normalize:
        with torch.no_grad():
            probs = torch.cat([p, (1 - p.sum(-1, keepdim=True)).clamp(min=0)], dim=-1)  # the seats, then the rest
            mean = (probs * rewards).sum(-1, keepdim=True)
            std = ((probs * (rewards - mean) ** 2).sum(-1)).sqrt()
        loss = loss / (std + eps)
    return loss



def forward_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-sequence mean of the exact KL(ref || pi) over the whole vocabulary at the masked
    positions (train.reasoning_keep): distillation from the frozen reference.

    logits, ref_logits: [B, T, V]; mask: [B, T]. Returns [B]; a sequence with no masked
    position contributes 0. Unlike the k3 estimate on the sampled token, every position pulls
    the whole distribution back toward the reference, so a drift that the policy's own samples
    would reinforce cannot build up.
    """
    logp = torch.log_softmax(_tempered(logits, temperature), dim=-1)
    ref_logp = torch.log_softmax(_tempered(ref_logits, temperature), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
