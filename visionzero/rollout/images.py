"""Turn image references from chat messages into RGB PIL images."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from PIL import Image

from visionzero.game.rules import parse_blank_ref

BLANK_COLOR = (128, 128, 128)


@lru_cache(maxsize=512)
def _load(ref: str) -> Image.Image:
    size = parse_blank_ref(ref)
    if size is not None:
        return Image.new("RGB", size, BLANK_COLOR)
    with Image.open(ref) as img:
        return img.convert("RGB")


def load_image(ref: Any) -> Image.Image:
    """A path, a `blank:WxH` ref, or an already-loaded PIL image -> RGB image."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    return _load(str(ref))


def message_images(messages: Iterable[dict[str, Any]]) -> list[Image.Image]:
    """Images of a conversation, in the order the chat template places their tokens."""
    images = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image":
                    images.append(load_image(part.get("image")))
    return images
