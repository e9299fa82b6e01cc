"""Turn image references from chat messages into RGB PIL images."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from PIL import Image

BLANK_PREFIX = "blank:"
BLANK_COLOR = (128, 128, 128)


def blank_ref(width: int, height: int) -> str:
    return f"{BLANK_PREFIX}{width}x{height}"


@lru_cache(maxsize=512)
def _load(ref: str) -> Image.Image:
    if ref.startswith(BLANK_PREFIX):
        w, _, h = ref[len(BLANK_PREFIX):].partition("x")
        return Image.new("RGB", (int(w), int(h)), BLANK_COLOR)
    with Image.open(ref) as img:
        return img.convert("RGB")


def load_image(ref: Any) -> Image.Image:
    """A path, a blank ref, or an already-loaded PIL image -> RGB image."""
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
