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


def collate(samples: Sequence[TrainSample], processor, pad_id: int, device) -> ModelBatch:
    """Pad a micro-batch and process its images; see the module docstring for the layout."""
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
    return ModelBatch(
        inputs={k: v.to(device) for k, v in inputs.items()},
        completion_ids=ids[:, P:].to(device),
        completion_mask=mask[:, P:].to(device),
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32, device=device),
        temperature=temps.pop(),
    )


def completion_logits(model, batch: ModelBatch) -> torch.Tensor:
    """Logits predicting each completion token: [B, C, V] (one forward pass)."""
    C = batch.completion_ids.shape[1]
    out = model(**batch.inputs, logits_to_keep=C + 1, use_cache=False)
    return out.logits[:, :-1, :]
