"""Local, offline photo edits: each changes pixels inside its box and nowhere else.

recolor  gives the object-like blob around the box centre a new hue (a new tone on grey photos)
remove   fills the box from its surroundings (interpolated from the border, plus the fine
         texture of a nearby patch), as if an object had been taken out
paste    copies a patch from elsewhere in the photo into the box
swap     exchanges two patches (two boxes)
mirror   flips the box's content left to right

Every edit blends into the untouched photo through a soft ellipse inside its box, so no
seam shows and nothing outside the box moves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageFilter

Box = list[int]  # x0, y0, x1, y1, end exclusive
MIN_VISIBLE = 16.0  # mean absolute change (0..255) inside a box for the edit to count as visible
MIN_CONTRAST = 24.0  # pixel std a box needs before it is recoloured: some object must be there
TRIES = 12


def _feather(h: int, w: int) -> np.ndarray:
    """Blend weight (h, w): 1 inside the ellipse that fills the box, falling to 0 before its edge.

    Round, soft-edged patches read as objects; square ones read as an editing artefact.
    """
    yy = ((np.arange(h) + 0.5) / h * 2 - 1)[:, None]
    xx = ((np.arange(w) + 0.5) / w * 2 - 1)[None, :]
    return np.clip((1 - (xx * xx + yy * yy)) / 0.35, 0, 1).astype(np.float32)


def _blend(img: np.ndarray, box: Box, new: np.ndarray, weight: np.ndarray) -> None:
    x0, y0, x1, y1 = box
    region = img[y0:y1, x0:x1].astype(np.float32)
    out = region + (new.astype(np.float32) - region) * weight[..., None]
    img[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _recolor(img: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    region = img[y0:y1, x0:x1].astype(np.float32)
    h, w = region.shape[:2]
    # the "object": pixels whose colour is close to the centre's, softened
    core = region[h * 3 // 8: h * 5 // 8 + 1, w * 3 // 8: w * 5 // 8 + 1].reshape(-1, 3)
    dist = np.linalg.norm(region - np.median(core, axis=0), axis=-1)
    mask = np.clip(1.6 - dist / 45.0, 0, 1)
    mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)), np.float32) / 255
    if np.ptp(region, axis=-1).max() < 8:  # a grey photo: a new tone, since a new hue would look painted on
        factor = rng.choice([0.45, 1.7])
        _blend(img, box, np.clip(region * factor + (40 if factor > 1 else 0), 0, 255), mask * _feather(h, w))
        return
    hsv = np.asarray(Image.fromarray(img[y0:y1, x0:x1]).convert("HSV"), np.float32)
    shift = rng.uniform(70, 186)  # hue turn of 100..260 degrees (PIL hue is 0..255)
    hsv[..., 0] = (hsv[..., 0] + shift) % 256
    hsv[..., 1] = np.maximum(hsv[..., 1], 150)  # grey areas would not show a hue change
    hsv[..., 2] = np.clip(hsv[..., 2] * 0.85 + 30, 0, 255)
    new = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
    _blend(img, box, new, mask * _feather(h, w))


def _smooth(line: np.ndarray, k: int) -> np.ndarray:
    """Moving average (width k) along a line of RGB pixels (n, 3), same length."""
    padded = np.pad(line, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
    kernel = np.ones(k) / k
    return np.stack([np.convolve(padded[:, c], kernel, "valid") for c in range(3)], axis=1)


def _remove(img: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    region = img[y0:y1, x0:x1].astype(np.float32)
    # borders smoothed first: sharp detail on a border would be smeared into streaks
    k = max(3, min(h, w) // 6)
    top, bottom, left, right = (_smooth(x, k) for x in (region[0], region[-1], region[:, 0], region[:, -1]))
    v = (np.arange(h) / max(h - 1, 1))[:, None, None]
    u = (np.arange(w) / max(w - 1, 1))[None, :, None]
    # Coons patch: the smooth surface that meets all four borders
    fill = ((1 - v) * top[None] + v * bottom[None] + (1 - u) * left[:, None] + u * right[:, None]
            - ((1 - u) * (1 - v) * top[0] + u * (1 - v) * top[-1] + (1 - u) * v * bottom[0] + u * v * bottom[-1]))
    # plus the fine texture of a neighbouring patch, so the hole is not suspiciously smooth
    H, W = img.shape[:2]
    sx = int(np.clip(x0 + rng.choice([-w, w]), 0, W - w))
    sy = int(np.clip(y0 + rng.integers(-h // 2, h // 2 + 1), 0, H - h))
    patch = Image.fromarray(img[sy:sy + h, sx:sx + w])
    detail = np.asarray(patch, np.float32) - np.asarray(patch.filter(ImageFilter.GaussianBlur(3)), np.float32)
    _blend(img, box, fill + detail, _feather(h, w))


def _copy_from(img: np.ndarray, src: np.ndarray, box: Box, from_box: Box) -> None:
    fx0, fy0, fx1, fy1 = from_box
    h, w = box[3] - box[1], box[2] - box[0]
    _blend(img, box, src[fy0:fy1, fx0:fx1], _feather(h, w))


def _mirror(img: np.ndarray, box: Box) -> None:
    x0, y0, x1, y1 = box
    _blend(img, box, img[y0:y1, x0:x1][:, ::-1].copy(), _feather(y1 - y0, x1 - x0))


def _overlaps(a: Box, b: Box, gap: int) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _random_box(rng: np.random.Generator, size: tuple[int, int], w: int | None = None, h: int | None = None) -> Box:
    H, W = size
    if w is None or h is None:
        side = rng.uniform(0.16, 0.32) * min(H, W)
        aspect = rng.uniform(0.7, 1.4)
        w, h = int(side * aspect ** 0.5), int(side / aspect ** 0.5)
    x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    return [x0, y0, x0 + w, y0 + h]


def _free_box(rng: np.random.Generator, shape: tuple[int, int], taken: list[Box], w: int | None = None,
              h: int | None = None) -> Box | None:
    gap = max(2, min(shape) // 50)
    for _ in range(50):
        box = _random_box(rng, shape, w, h)
        if not any(_overlaps(box, t, gap) for t in taken):
            return box
    return None


def _busy_box(img: np.ndarray, rng: np.random.Generator, taken: list[Box], candidates: int = 6) -> Box | None:
    """Of a few free boxes, the one with the most going on (highest contrast): likely an object."""
    best, best_score = None, -1.0
    for _ in range(candidates):
        box = _free_box(rng, img.shape[:2], taken)
        if box is None:
            break
        x0, y0, x1, y1 = box
        score = float(img[y0:y1:2, x0:x1:2].std())
        if score > best_score:
            best, best_score = box, score
    return best


def _change(a: np.ndarray, b: np.ndarray, box: Box) -> float:
    x0, y0, x1, y1 = box
    return float(np.abs(a[y0:y1, x0:x1].astype(np.int16) - b[y0:y1, x0:x1]).mean())


def edit_photo(img: np.ndarray, rng: np.random.Generator, kinds: list[str], n_edits: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Apply 1..n_edits visible local edits at non-overlapping boxes.

    Returns the edited copy and the regions: {kind, box} (+ `source`, the box a paste or
    swap took its pixels from). An attempt that barely changes the pixels (a flat sky, a
    mirror of a symmetric patch) is undone and retried elsewhere.
    """
    shape = img.shape[:2]
    out = img.copy()
    regions: list[dict[str, Any]] = []
    taken: list[Box] = []
    count = int(rng.integers(1, n_edits + 1))
    for _ in range(count):
        for _ in range(TRIES):
            kind = str(rng.choice(kinds))
            box = _busy_box(out, rng, taken)
            if box is None:
                break
            w, h = box[2] - box[0], box[3] - box[1]
            trial = out.copy()
            new: list[dict[str, Any]] = []
            if kind == "recolor" and out[box[1]:box[3]:2, box[0]:box[2]:2].std() < MIN_CONTRAST:
                continue  # a flat area (sky, floor) would turn into a coloured blob
            if kind == "recolor":
                _recolor(trial, box, rng)
            elif kind == "remove":
                _remove(trial, box, rng)
            elif kind == "mirror":
                _mirror(trial, box)
            else:  # paste and swap need a second place of the same size
                other = _free_box(rng, shape, taken + [box], w, h)
                if other is None:
                    continue
                _copy_from(trial, img, box, other)
                if kind == "swap":
                    _copy_from(trial, img, other, box)
                    new.append({"kind": kind, "box": other, "source": box})
                new.insert(0, {"kind": kind, "box": box, "source": other})
            new = new or [{"kind": kind, "box": box}]
            if all(_change(out, trial, r["box"]) >= MIN_VISIBLE for r in new):
                out = trial
                regions.extend(new)
                taken.extend(r["box"] for r in new)
                break
    if not regions:  # no edit showed anywhere (a flat image): shift the colours of one box
        box = _random_box(rng, shape)
        x0, y0, x1, y1 = box
        out[y0:y1, x0:x1] = (out[y0:y1, x0:x1].astype(np.int16) + 128) % 256
        regions.append({"kind": "invert", "box": box})
    return out, regions
