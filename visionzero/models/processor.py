"""Image-only processors for the Qwen-VL families.

The stock Qwen2-VL / Qwen2.5-VL processors insist on a video processor, whose base class
needs torchvision; there is no CPU build of torchvision here. The game only ever sends
images, so these subclasses drop the video attribute and keep everything else (chat
template, image-token expansion, `image_grid_thw`). They are registered with
`AutoProcessor` so a saved tiny model reloads through the usual auto classes. Each image is
processed once per process (`image_cache.IMAGES`): a game sends the same images in every turn.
"""

from __future__ import annotations

from transformers import AutoProcessor, ProcessorMixin
from transformers.image_utils import make_flat_list_of_images
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl import Qwen2VLConfig
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

from visionzero.models.image_cache import IMAGES


def _init_tokens(processor: ProcessorMixin, tokenizer) -> None:
    processor.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    processor.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)


class _CachedPixels:
    """The processor's image step through the process's image cache (same output)."""

    def _process_images(self, images, **kwargs):
        images = make_flat_list_of_images(images)
        processed = IMAGES.pixels(self.image_processor, images, **kwargs)
        return processed, [self.replace_image_token(processed, image_idx=k) for k in range(len(images))]


class ImageOnlyQwen2_5_VLProcessor(_CachedPixels, Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_tokens(self, tokenizer)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen2VLProcessor(_CachedPixels, Qwen2VLProcessor):
    """Qwen2-VL processor without the video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_tokens(self, tokenizer)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def register_processors() -> None:
    """Make AutoProcessor build the image-only processors for these model types."""
    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)
    AutoProcessor.register(Qwen2VLConfig, ImageOnlyQwen2VLProcessor, exist_ok=True)


register_processors()
