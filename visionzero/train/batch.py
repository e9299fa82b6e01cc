"""Training samples and how a micro-batch of them becomes model inputs.

Layout of a micro-batch (the TRL convention): prompts left-padded to P tokens, completions
right-padded to C tokens, so every completion starts at column P and the logits of all
completion tokens are the last C+1 positions (`logits_to_keep`): one forward per
micro-batch, never one per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from visionzero.rollout.images import load_image
from visionzero.train.samples import TrainSample


@dataclass
class ModelBatch:
    inputs: dict[str, torch.Tensor]  # forward() kwargs
    completion_ids: torch.Tensor  # [B, C]
    completion_mask: torch.Tensor  # [B, C]
    advantages: torch.Tensor  # [B]
    temperature: float
    answer_mask: torch.Tensor | None = None  # [B, C]: 1 from the last \boxed on (all 1 without one)


BOX = "\\boxed"


def answer_start(token_ids: Sequence[int], tokenizer) -> int:
    """Index of the completion token where its last `\\boxed` begins (0 when there is none).

    Each token is decoded alone and the pieces are laid end to end: exact for the ASCII
    markup searched here, whatever multi-byte characters the reasoning holds.
    """
    pieces = [tokenizer.decode([t]) for t in token_ids]
    text = "".join(pieces)
    at = text.rfind(BOX)
    if at < 0:
        return 0
    end = 0
    for i, piece in enumerate(pieces):
        end += len(piece)
        if end > at:
            return i
    return 0


def collate(samples: Sequence[TrainSample], processor, pad_id: int, device, with_answer_mask: bool = False) -> ModelBatch:
    """Pad a micro-batch and process its images; see the module docstring for the layout.
    `with_answer_mask`: also mark each completion's answer tokens (credit assignment)."""
    P = max(len(s.prompt_ids) for s in samples)
    C = max(len(s.completion_ids) for s in samples)
    ids = torch.full((len(samples), P + C), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(samples):
        p, c = len(s.prompt_ids), len(s.completion_ids)
        ids[row, P - p : P] = torch.tensor(s.prompt_ids)
        ids[row, P : P + c] = torch.tensor(s.completion_ids)
        mask[row, P - p : P + c] = 1
    inputs: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask}
    images = [load_image(ref) for s in samples for ref in s.images]
    if images:
        vision = processor.image_processor(images=images, return_tensors="pt")
        inputs["pixel_values"] = vision["pixel_values"]
        inputs["image_grid_thw"] = vision["image_grid_thw"]
    if hasattr(processor, "create_mm_token_type_ids"):
        # Qwen-VL's 3-D rotary positions need to know which tokens are image tokens.
        inputs["mm_token_type_ids"] = torch.tensor(processor.create_mm_token_type_ids(ids.tolist()))
    temps = {s.temperature for s in samples}
    if len(temps) > 1:
        raise ValueError(f"a micro-batch mixes sampling temperatures {sorted(temps)}")
    answer = torch.zeros((len(samples), C), dtype=torch.long)
    if with_answer_mask:
        for row, s in enumerate(samples):
            answer[row, answer_start(s.completion_ids, processor.tokenizer) : len(s.completion_ids)] = 1
    return ModelBatch(
        inputs={k: v.to(device) for k, v in inputs.items()},
        completion_ids=ids[:, P:].to(device),
        completion_mask=mask[:, P:].to(device),
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32, device=device),
        temperature=temps.pop(),
        answer_mask=answer.to(device) if with_answer_mask else None,
    )


def completion_logits(model, batch: ModelBatch) -> torch.Tensor:
    """Logits predicting each completion token: [B, C, V] (one forward pass)."""
    C = batch.completion_ids.shape[1]
    out = model(**batch.inputs, logits_to_keep=C + 1, use_cache=False)
    return out.logits[:, :-1, :]
