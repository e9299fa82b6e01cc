"""Training samples and how a micro-batch of them becomes model inputs.

Layout of a micro-batch (the TRL convention): prompts left-padded to P tokens, completions
right-padded to C tokens, so every completion starts at column P and the logits of all
completion tokens are the last C+1 positions (`logits_to_keep`): one forward per
micro-batch, never one per sample.

Shared prompts (`group_size` m > 1): a micro-batch of k GRPO groups whose m completions
each continue one prompt (the G votes of a game) holds the k prompts once. The prompts run
first and their KV cache is repeated m times; the completions then run on it. The same
logits and gradients as m copies (the cache keeps the graph), with the prompt and the image
encoder computed once instead of m times: the observer prompt is ~330 tokens against ~55
of reasoning, so the vote stage's update does ~4x fewer token-passes.

Detached prompts (`train.prompt_grad=false`): every micro-batch takes that split layout
(m = 1 too) and the prompt, all but its last token, runs under no_grad; the last prompt
token and the completions run on its cache with the graph. Same logits; the gradient
leaves out the prompt's own activations (and the vision tower), so the backward covers
only the completions' tokens.

Images: processed once each (`models/image_cache.py`); wherever no gradient has to reach
the vision tower (a detached prompt, the frozen reference, the behaviour log-probs) the
tower's cached outputs stand in for the pixels, so a frozen tower encodes each image once.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from visionzero.models.image_cache import IMAGES, unwrap
from visionzero.rollout.images import load_image
from visionzero.train.samples import TrainSample


@dataclass
class ModelBatch:
    inputs: dict[str, torch.Tensor]  # forward() kwargs
    completion_ids: torch.Tensor  # [B, C]
    completion_mask: torch.Tensor  # [B, C]
    advantages: torch.Tensor  # [B]
    temperature: float
    answer_mask: torch.Tensor | None = None  # [B, C]: 1 from the first box's content on (all 1 without a box)
    group_size: int = 1  # m > 1: `inputs` holds B/m prompts, each continued by m completions
    prompt_grad: bool = True  # False: the prompt runs under no_grad (module docstring)
    images: list[Any] = field(default_factory=list)  # the prompts' images, in `inputs` order (cache keys)

    @property
    def split(self) -> bool:
        """`inputs` holds the prompts alone, the completions run on their cache."""
        return self.group_size > 1 or not self.prompt_grad


BOX = "\\boxed{"


def answer_start(token_ids: Sequence[int], tokenizer, marker: str = BOX) -> int:
    """Index of the completion token holding the first character of its first box's content
    (the vote or clue as parsed, METHOD.md section 3); 0 when there is no box. Another
    `marker`: the token after its first occurrence (the base stage's summary line).

    The `\\boxed{` opener itself is not the answer: when to write it is when to stop
    reasoning, and crediting it with the vote's advantage taught the model to stop early
    (measured: the observer's eight checks shrank to one in ~10 iterations).
    Each token is decoded alone and the pieces are laid end to end: exact for the ASCII
    markup searched here, whatever multi-byte characters the reasoning holds.
    """
    pieces = [tokenizer.decode([t]) for t in token_ids]
    text = "".join(pieces)
    at = text.find(marker)
    if at < 0:
        return 0
    at += len(marker)
    end = 0
    for i, piece in enumerate(pieces):
        end += len(piece)
        if end > at:
            return i
    return 0


def _prompt_inputs(
    prompts: Sequence[TrainSample], processor, pad_id: int, width: int
) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Left-pad each sample's prompt (plus `width` completion columns, filled by the caller);
    also returns the prompts' images."""
    P = max(len(s.prompt_ids) for s in prompts)
    ids = torch.full((len(prompts), P + width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(prompts):
        ids[row, P - len(s.prompt_ids) : P] = torch.tensor(s.prompt_ids)
        mask[row, P - len(s.prompt_ids) : P] = 1
    inputs: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask}
    images = [load_image(ref) for s in prompts for ref in s.images]
    if images:
        inputs.update(IMAGES.pixels(processor.image_processor, images))
    return inputs, images


def prompt_runs(samples: Sequence[TrainSample]) -> list[list[TrainSample]]:
    """The samples cut into runs of consecutive completions of one prompt (same prompt
    tokens and images): a GRPO group's G votes form one run, a clue turn a run of one."""
    runs: list[list[TrainSample]] = []
    for i, s in enumerate(samples):
        prev = samples[i - 1] if i else None
        if prev is not None and prev.prompt_ids == s.prompt_ids and prev.images == s.images:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def prompt_groups(samples: Sequence[TrainSample]) -> int:
    """m when the samples are k consecutive runs of m > 1 completions of one prompt each, else 1."""
    sizes = [len(run) for run in prompt_runs(samples)]
    m = sizes[0] if sizes else 1
    return m if m > 1 and all(r == m for r in sizes) else 1


def collate(
    samples: Sequence[TrainSample], processor, pad_id: int, device, with_answer_mask: bool = False, share_prompts: bool = False,
    answer_marker: str = BOX, prompt_grad: bool = True,
) -> ModelBatch:
    """Pad a micro-batch and process its images; see the module docstring for the layout.
    `with_answer_mask`: also mark each completion's answer tokens (credit assignment), from
    the first box's content on (or from after `answer_marker`).
    `share_prompts`: hold each group's prompt once when the samples come in equal groups.
    `prompt_grad` False: the prompts run under no_grad (train.prompt_grad)."""
    m = prompt_groups(samples) if share_prompts else 1
    split = m > 1 or not prompt_grad
    C = max(len(s.completion_ids) for s in samples)
    prompts = list(samples[::m])
    inputs, images = _prompt_inputs(prompts, processor, pad_id, 0 if split else C)
    P = inputs["input_ids"].shape[1] - (0 if split else C)
    completion = torch.full((len(samples), C), pad_id, dtype=torch.long)
    completion_mask = torch.zeros_like(completion)
    for row, s in enumerate(samples):
        completion[row, : len(s.completion_ids)] = torch.tensor(s.completion_ids)
        completion_mask[row, : len(s.completion_ids)] = 1
    if not split:
        inputs["input_ids"][:, P:] = completion
        inputs["attention_mask"][:, P:] = completion_mask
    if hasattr(processor, "create_mm_token_type_ids"):
        # Qwen-VL's 3-D rotary positions need to know which tokens are image tokens.
        inputs["mm_token_type_ids"] = torch.tensor(processor.create_mm_token_type_ids(inputs["input_ids"].tolist()))
    temps = {s.temperature for s in samples}
    if len(temps) > 1:
        raise ValueError(f"a micro-batch mixes sampling temperatures {sorted(temps)}")
    answer = torch.zeros((len(samples), C), dtype=torch.long)
    if with_answer_mask:
        for row, s in enumerate(samples):
            answer[row, answer_start(s.completion_ids, processor.tokenizer, answer_marker) : len(s.completion_ids)] = 1
    return ModelBatch(
        inputs={k: v.to(device) for k, v in inputs.items()},
        completion_ids=completion.to(device),
        completion_mask=completion_mask.to(device),
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32, device=device),
        temperature=temps.pop(),
        answer_mask=answer.to(device) if with_answer_mask else None,
        group_size=m,
        prompt_grad=prompt_grad,
        images=images,
    )


def _image_inputs(model, batch: ModelBatch, inputs: dict[str, Any], need_grad: bool) -> dict[str, Any]:
    """`inputs`, with the vision tower's cached outputs in place of the pixels unless a
    gradient has to reach the tower."""
    return inputs if need_grad else IMAGES.in_place_of_pixels(model, batch.images, inputs)


def completion_logits(model, batch: ModelBatch) -> torch.Tensor:
    """Logits predicting each completion token: [B, C, V]."""
    if batch.split:
        return _shared_prompt_logits(model, batch)
    C = batch.completion_ids.shape[1]
    inputs = _image_inputs(model, batch, batch.inputs, need_grad=torch.is_grad_enabled())
    out = model(**inputs, logits_to_keep=C + 1, use_cache=False)
    return out.logits[:, :-1, :]


def _rope_owner(model):
    """The module that computes Qwen-VL's 3-D rotary positions (through peft/accelerate wrappers)."""
    return unwrap(model, lambda m: hasattr(m, "get_rope_index"))


def _shared_prompt_logits(model, batch: ModelBatch) -> torch.Tensor:
    """Prompts once, KV cache repeated m times, completions on top (module docstring).
    A detached prompt (`batch.prompt_grad` False) fills the cache under no_grad."""
    m, C = batch.group_size, batch.completion_ids.shape[1]
    prompt = _image_inputs(model, batch, dict(batch.inputs), need_grad=batch.prompt_grad and torch.is_grad_enabled())
    type_ids = prompt.pop("mm_token_type_ids", None)
    owner = _rope_owner(model)
    positions = None
    if owner is not None and type_ids is not None:
        positions, _ = owner.get_rope_index(
            prompt["input_ids"], mm_token_type_ids=type_ids, image_grid_thw=prompt.get("image_grid_thw"),
            attention_mask=prompt["attention_mask"],
        )  # fmt: skip
    if positions is None:  # 1-D rotary: positions count the real tokens (left padding skipped)
        positions = (prompt["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    # Completion tokens are text: every rotary axis continues from the prompt's last position.
    start = positions[..., -1:] + 1 if positions.ndim == 2 else positions[..., -1:].amax(0) + 1
    steps = torch.arange(C, device=start.device)
    text = (start + steps).repeat_interleave(m, 0)  # [B, C]
    if positions.ndim == 3:
        text = text.unsqueeze(0).expand(positions.shape[0], -1, -1)
    attention = torch.cat([prompt["attention_mask"].repeat_interleave(m, 0), batch.completion_mask], dim=1)
    # All but the last prompt token fill the cache (under no_grad for a detached prompt); that
    # token runs with the completions, so every completion token's logit comes from one call.
    head = {k: v[:, :-1] if k in ("input_ids", "attention_mask") else v for k, v in prompt.items()}
    with nullcontext() if batch.prompt_grad else torch.no_grad():
        first = model(**head, position_ids=positions[..., :-1], use_cache=True, logits_to_keep=1)
    key = "cache" if "cache" in first else "past_key_values"  # renamed in transformers 5.2x
    cache = first[key]
    cache.batch_repeat_interleave(m)
    last = prompt["input_ids"][:, -1:].repeat_interleave(m, 0)
    tail = torch.cat([positions[..., -1:].repeat_interleave(m, -2), text], dim=-1)
    rest = model(
        input_ids=torch.cat([last, batch.completion_ids], dim=1), attention_mask=attention, position_ids=tail,
        use_cache=True, **{key: cache},
    )  # fmt: skip
    return rest.logits[:, :-1, :]
