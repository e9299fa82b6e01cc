"""Real-photo pairs: a random crop of a source photo and a locally edited copy, or a ready pair."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from visionzero.pairs.photo_edits import edit_photo
from visionzero.pairs.sources import SourceItem, load_rgb
from visionzero.settings.schema import PhotoSettings

DIFF_THRESHOLD = 24  # a ready pair's pixels differ "visibly" above this (0..255, max over channels)
MAX_DIFF_BOXES = 6


def random_crop(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (55-100% of the short side), resized to size x size, maybe mirrored."""
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.55, 1.0))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    crop = Image.fromarray(img[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.Resampling.LANCZOS)
    out = np.asarray(crop)
    return out[:, ::-1].copy() if rng.integers(2) else out.copy()


def fit(img: np.ndarray, size: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize so the longer side is `size` (or to exactly `shape` (h, w)), keeping the aspect."""
    h, w = img.shape[:2]
    if shape is None:
        scale = size / max(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if shape == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def diff_regions(a: np.ndarray, b: np.ndarray) -> list[dict[str, Any]]:
    """Boxes around the areas where two images visibly differ (for ready pairs: no edit log)."""
    from scipy import ndimage  # scikit-image's own dependency

    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1) > DIFF_THRESHOLD
    diff = ndimage.binary_dilation(diff, iterations=max(1, max(a.shape[:2]) // 100))
    labels, n = ndimage.label(diff)
    boxes = []
    min_area = 0.0005 * a.shape[0] * a.shape[1]
    for sl in ndimage.find_objects(labels):
        ys, xs = sl
        if (ys.stop - ys.start) * (xs.stop - xs.start) >= min_area:
            boxes.append([xs.start, ys.start, xs.stop, ys.stop])
    boxes.sort(key=lambda bx: (bx[2] - bx[0]) * (bx[3] - bx[1]), reverse=True)
    return [{"kind": "external", "box": bx} for bx in boxes[:MAX_DIFF_BOXES]]


def make_photo_pair(rng: np.random.Generator, cfg: PhotoSettings, size: int, item: SourceItem) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One (original, edited) photo pair plus the manifest fields `regions`, `changes`, `source`."""
    if item.edited_path is not None:
        a = fit(load_rgb(item.path, max_pixels=cfg.max_pixels), size)
        b = fit(load_rgb(item.edited_path, max_pixels=cfg.max_pixels), size, shape=a.shape[:2])
        regions = diff_regions(a, b)
        return a, b, {"regions": regions, "changes": regions, "source": item.name}
    photo = random_crop(load_rgb(item.path, max_pixels=cfg.max_pixels), rng, size)
    edited, regions = edit_photo(photo, rng, list(cfg.edit_kinds), cfg.n_edits)
    return photo, edited, {"regions": regions, "changes": regions, "source": item.name}
