"""A small ray caster that draws CLEVR-style scenes with numpy.

One directional key light with soft shadows, a fill light, and an environment (grey floor,
bright sky) that metal objects reflect; colours are shaded in linear light.

Speed comes from a few choices: the camera rays and the shaded floor are computed once per
image size and process (`_view`); each object is ray cast only inside its own screen box,
at one ray per pixel, with sub-pixel rays only along its silhouette (objects never overlap
on screen, so no depth buffer is needed); shadows are polygons pushed along the light and
blurred, not ray traced; and objects shared by an original and its edit are drawn once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from visionzero.pairs.clevr_geometry import (
    FILL_LIGHT,
    KEY_LIGHT,
    Camera,
    Solid,
    Vec,
    camera,
    intersect,
    ray_dirs,
    screen_box,
    shadow_polygons,
    surface,
)

SUPERSAMPLE = 2  # sub-pixels per side along object silhouettes (3 looks the same at 448 px, costs 13% more)
GROUND_ALBEDO = 0.30  # linear; renders as a mid grey like CLEVR's floor


# ----------------------------------------------------------------------------- shading
def _srgb_to_linear(rgb: tuple[int, int, int]) -> np.ndarray:
    return (np.asarray(rgb, dtype=np.float32) / 255.0) ** 2.2


_GAMMA_STEPS = 16384
_GAMMA_LUT = ((np.arange(_GAMMA_STEPS + 1) / _GAMMA_STEPS) ** (1 / 2.2) * 255).astype(np.float32)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB 0..255 (float), by table: much faster than a power per pixel."""
    return _GAMMA_LUT[(np.clip(linear, 0, 1) * _GAMMA_STEPS).astype(np.int32)]


def _dot(a: Vec, b) -> np.ndarray:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _shade(solid: Solid, d: Vec, n: Vec, gap: np.ndarray) -> np.ndarray:
    """Linear RGB (k, 3) of the hit points: ambient + key + fill light, specular, bevelled edges.

    Everything is computed per point (1-D) and becomes RGB in one outer product at the end.
    """
    base = _srgb_to_linear(solid.color)
    key, fill = KEY_LIGHT.astype(np.float32), FILL_LIGHT.astype(np.float32)
    ndl = np.clip(_dot(n, key), 0, 1)
    ndf = np.clip(_dot(n, fill), 0, 1)
    h = (key[0] - d[0], key[1] - d[1], key[2] - d[2])
    ndh = np.clip(_dot(n, h) / np.sqrt(_dot(h, h)), 0, 1)
    p2 = ndh * ndh
    p4 = p2 * p2
    p8 = p4 * p4
    # a thin bright line along edges is what makes small cubes and cylinders read as solids
    # (faded on faces seen edge-on, where both bevels of a thin face would merge into stripes)
    facing = np.clip(-_dot(d, n), 0, 1)
    bevel = np.clip(1 - gap / (0.06 * solid.radius), 0, 1) * facing * 0.3
    if solid.metal:
        up = d[1] - 2 * _dot(d, n) * n[1]  # height of the reflected ray
        env = np.where(up > 0, 0.35 + 0.65 * np.sqrt(np.clip(up, 0, 1)), GROUND_ALBEDO * 0.55)
        # a broad tinted lobe gives flat metal faces a visible sheen; a sharp white one the glint
        tint = 0.05 + 0.25 * ndl + 0.10 * ndf + 0.75 * env + 1.6 * p8
        p16 = p8 * p8
        white = 1.4 * (p16 * p16 * p16 * p8 * p4) + 0.3 * bevel  # ndh ** 60
    else:
        tint = 0.10 + 0.85 * ndl + 0.22 * ndf + bevel
        white = 0.05 * (p8 * p4)  # ndh ** 12
    return np.outer(tint, base) + white[:, None]


# ----------------------------------------------------------------------------- the floor
@dataclass(frozen=True)
class _View:
    cam: Camera
    dirs: np.ndarray  # (3, S, S) unit ray through each pixel centre, one plane per component
    floor: np.ndarray  # (S, S, 3) sRGB (0..255, float) of the unshadowed floor
    floor_u8: np.ndarray  # the same, rounded to uint8


@lru_cache(maxsize=4)
def _view(size: int) -> _View:
    cam = camera()
    d = ray_dirs(cam, size, 0, 0, size, size, 1)
    t = -cam.origin[1] / np.minimum(d[..., 1], -1e-6)
    pts = cam.origin + t[..., None] * d
    # a broad spot of light near the scene centre, fading towards the far floor and the corners
    dist = np.hypot(pts[..., 0] + 0.8, pts[..., 2] - 0.5)
    spot = 0.55 + 0.45 * np.exp(-((dist / 7.0) ** 2))
    floor = GROUND_ALBEDO * (0.35 + 0.75 * KEY_LIGHT[1]) * spot
    floor = np.clip(floor, 0, 1) ** (1 / 2.2) * 255
    floor = np.repeat(floor[..., None], 3, axis=-1).astype(np.float32)
    return _View(cam, np.ascontiguousarray(d.transpose(2, 0, 1)), floor, (floor + 0.5).astype(np.uint8))


# ----------------------------------------------------------------------------- shadows
SHADOW_STRENGTH = 0.62  # share of the light the object blocks (the rest is sky light)


def _int_box(box: tuple[float, float, float, float], size: int, pad: int = 1) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (max(0, int(math.floor(x0)) - pad), max(0, int(math.floor(y0)) - pad),
            min(size, int(math.ceil(x1)) + pad), min(size, int(math.ceil(y1)) + pad))


def _shadow_blur(size: int) -> float:
    return max(1.0, size / 200)


def shadow_region(solid: Solid, size: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) outside which the object's shadow leaves the floor untouched."""
    pix = np.concatenate(shadow_polygons(solid, size, _view(size).cam))
    pad = int(math.ceil(3 * _shadow_blur(size))) + 2
    return _int_box((pix[:, 0].min(), pix[:, 1].min(), pix[:, 0].max(), pix[:, 1].max()), size, pad)


@lru_cache(maxsize=4)
def _shadow_lut(strength: float) -> np.ndarray:
    # darken in linear light: scaling radiance by f scales sRGB values by f ** (1 / 2.2)
    return ((1 - strength * np.arange(256) / 255.0) ** (1 / 2.2)).astype(np.float32)


def _add_shadow(shade: np.ndarray, solid: Solid, view: _View, size: int) -> tuple[int, int, int, int] | None:
    """Max the object's soft shadow (0..255) into `shade` and return the box it touched.

    Taking the maximum (not the product) keeps overlapping shadows from getting darker.
    """
    polys = shadow_polygons(solid, size, view.cam)
    pix = np.concatenate(polys)
    pad = int(math.ceil(3 * _shadow_blur(size))) + 2
    x0, y0, x1, y1 = _int_box((pix[:, 0].min(), pix[:, 1].min(), pix[:, 0].max(), pix[:, 1].max()), size, pad)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(mask)
    for poly in polys:
        draw.polygon((poly - (x0, y0)).ravel().tolist(), fill=255)
    soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(_shadow_blur(size))))
    np.maximum(shade[y0:y1, x0:x1], soft, out=shade[y0:y1, x0:x1])
    return x0, y0, x1, y1


# ----------------------------------------------------------------------------- objects
def _edge_pixels(hit: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds both hits and misses: the silhouette."""
    p = np.pad(hit, 1)
    h, w = hit.shape
    row_any = p[:, :-2] | p[:, 1:-1] | p[:, 2:]  # separable 3x3 max and min
    row_all = p[:, :-2] & p[:, 1:-1] & p[:, 2:]
    any3 = row_any[:-2] | row_any[1:-1] | row_any[2:]
    all3 = row_all[:-2] & row_all[1:-1] & row_all[2:]
    return any3 & ~all3


def _subpixel_rays(view: _View, size: int, px: np.ndarray, py: np.ndarray) -> Vec:
    """SUPERSAMPLE^2 unit rays per pixel (k, ss*ss) through the pixels at (px, py)."""
    ss = SUPERSAMPLE
    off = ((np.arange(ss) + 0.5) / ss).astype(np.float32)
    k = len(px)
    sx = np.broadcast_to(px[:, None, None] + off[None, None, :], (k, ss, ss)).reshape(k, -1)
    sy = np.broadcast_to(py[:, None, None] + off[None, :, None], (k, ss, ss)).reshape(k, -1)
    cam, th = view.cam, float(view.cam.tan_half)
    u = (2 * sx / size - 1) * th
    v = (1 - 2 * sy / size) * th
    comps = [float(cam.forward[i]) + u * float(cam.right[i]) + v * float(cam.up[i]) for i in range(3)]
    inv = 1 / np.sqrt(comps[0] * comps[0] + comps[1] * comps[1] + comps[2] * comps[2])
    return comps[0] * inv, comps[1] * inv, comps[2] * inv


@dataclass
class _Layer:
    """Objects drawn on transparent ground: premultiplied sRGB colour, coverage and boxes."""

    rgb: np.ndarray  # (S, S, 3) float, premultiplied by alpha
    alpha: np.ndarray  # (S, S) float in [0, 1]
    boxes: dict[Solid, tuple[int, int, int, int]]


def _new_layer(size: int) -> _Layer:
    return _Layer(np.zeros((size, size, 3), np.float32), np.zeros((size, size), np.float32), {})


def _draw(layer: _Layer, solid: Solid, view: _View, size: int) -> None:
    """Ray cast one object into `layer`; objects never overlap on screen, so no depth test.

    One ray per pixel; along the silhouette, SUPERSAMPLE^2 sub-rays give the coverage and one
    of the sub-rays that hit gives the colour (shading varies little within a pixel).
    """
    x0, y0, x1, y1 = _int_box(screen_box(solid, size), size)
    h, w = y1 - y0, x1 - x0
    o = view.cam.origin
    d = tuple(view.dirs[k, y0:y1, x0:x1].ravel() for k in range(3))
    t = intersect(solid, o, d)
    hit = np.isfinite(t).reshape(h, w)
    rim = _edge_pixels(hit)
    inner_idx = np.flatnonzero(hit & ~rim)
    rim_idx = np.flatnonzero(rim)
    sd = _subpixel_rays(view, size, (x0 + rim_idx % w).astype(np.float32), (y0 + rim_idx // w).astype(np.float32))
    st = intersect(solid, o, sd)
    shit = np.isfinite(st)
    cover = shit.mean(axis=1, dtype=np.float32)
    touched = np.flatnonzero(cover > 0)
    first = np.argmax(shit[touched], axis=1)
    dirs = tuple(np.concatenate([a[inner_idx], b[touched, first]]) for a, b in zip(d, sd))
    n, gap = surface(solid, o, dirs, np.concatenate([t[inner_idx], st[touched, first]]))
    color = _to_srgb(_shade(solid, dirs, n, gap))
    idx = np.concatenate([inner_idx, rim_idx[touched]])
    weight = np.concatenate([np.ones(len(inner_idx), np.float32), cover[touched]])
    rgb = np.zeros((h * w, 3), np.float32)
    rgb[idx] = color * weight[:, None]  # premultiplied by coverage
    alpha = np.zeros(h * w, np.float32)
    alpha[idx] = weight
    # added, not assigned: rounded boxes of two objects may share a border pixel at small sizes
    layer.rgb[y0:y1, x0:x1] += rgb.reshape(h, w, 3)
    layer.alpha[y0:y1, x0:x1] += alpha.reshape(h, w)
    if len(idx):
        ys, xs = np.divmod(idx, w)
        layer.boxes[solid] = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
    else:
        layer.boxes[solid] = (x0, y0, x0, y0)


def _blend(img: np.ndarray, layer: _Layer, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if x1 > x0 and y1 > y0:
        a = layer.alpha[y0:y1, x0:x1, None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + layer.rgb[y0:y1, x0:x1] + 0.5


def _shadows(img: np.ndarray, view: _View, shade: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box  # recomputed from the clean floor, so overlapping boxes are harmless
    img[y0:y1, x0:x1] = view.floor[y0:y1, x0:x1] * _shadow_lut(SHADOW_STRENGTH)[shade[y0:y1, x0:x1]][..., None] + 0.5


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def render_scenes(scenes: list[list[Solid]], size: int) -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """Draw several scenes that share objects (an original and its edit) at once.

    Objects present in every scene are ray cast, shadowed and composed once; each scene then
    redoes only the boxes its own objects and shadows touch. Returns, per scene, the RGB image
    (uint8, size x size) and each object's tight pixel box, in the scene's object order.
    """
    view = _view(size)
    common = set(scenes[0]).intersection(*map(set, scenes[1:]))
    shared = _new_layer(size)
    base_shade = np.zeros((size, size), np.uint8)
    base = view.floor_u8.copy()
    for solid in dict.fromkeys(s for s in scenes[0] if s in common):
        box = _add_shadow(base_shade, solid, view, size)
        if box:
            _shadows(base, view, base_shade, box)
        _draw(shared, solid, view, size)
    for box in shared.boxes.values():
        _blend(base, shared, box)
    out = []
    for scene in scenes:
        img, own, shade = base.copy(), _new_layer(size), base_shade.copy()
        mine = [s for s in dict.fromkeys(scene) if s not in common]
        shadow_boxes = [b for b in (_add_shadow(shade, s, view, size) for s in mine) if b]
        for box in shadow_boxes:  # a new shadow may fall behind a shared object: redo that part
            _shadows(img, view, shade, box)
            for obj_box in shared.boxes.values():
                _blend(img, shared, _overlap(box, obj_box))
        for solid in mine:
            _draw(own, solid, view, size)
            _blend(img, own, own.boxes[solid])
        out.append((img, [shared.boxes[s] if s in common else own.boxes[s] for s in scene]))
    return out


def render(solids: list[Solid], size: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Draw one scene; returns the RGB image (uint8) and each object's tight pixel box."""
    return render_scenes([solids], size)[0]
