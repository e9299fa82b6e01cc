"""Model families: what differs between VLM architectures, in one table.

The game and rollout code never branch on the architecture; they ask the family for the
model class, the processor class and the special tokens. Adding a family (InternVL3,
Gemma 3, ...) means adding an entry here and, if needed, a processor in processor.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from visionzero.models import processor as _processors


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]  # config.model_type values that belong to this family
    model_class: Callable[[], type]  # lazy: importing model classes costs seconds
    processor_class: type
    end_of_turn: str  # token that ends an assistant turn (generation stops there)
    media_pad_tokens: tuple[str, ...]  # never sampled: a stray one breaks the next forward

    def end_of_turn_id(self, tokenizer) -> int:
        return int(tokenizer.convert_tokens_to_ids(self.end_of_turn))

    def suppressed_ids(self, tokenizer) -> list[int]:
        """Token ids generation must never sample (image/video pads)."""
        return [int(tokenizer.convert_tokens_to_ids(t)) for t in self.media_pad_tokens]


def _qwen2_5_vl():
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration


def _qwen2_vl():
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration


FAMILIES: dict[str, ModelFamily] = {
    "qwen2_5_vl": ModelFamily(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        model_class=_qwen2_5_vl,
        processor_class=_processors.ImageOnlyQwen2_5_VLProcessor,
        end_of_turn="<|im_end|>",
        media_pad_tokens=("<|image_pad|>", "<|video_pad|>"),
    ),
    "qwen2_vl": ModelFamily(
        name="qwen2_vl",
        model_types=("qwen2_vl",),
        model_class=_qwen2_vl,
        processor_class=_processors.ImageOnlyQwen2VLProcessor,
        end_of_turn="<|im_end|>",
        media_pad_tokens=("<|image_pad|>", "<|video_pad|>"),
    ),
}


def family_for_model_type(model_type: str) -> ModelFamily:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = ", ".join(sorted(t for f in FAMILIES.values() for t in f.model_types))
    raise ValueError(f"model type {model_type!r} is not supported (supported: {known})")
