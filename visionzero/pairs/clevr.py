"""CLEVR-style scenes: sample a scene graph, edit two objects, render both images.

The scene graph lists objects with CLEVR attributes (colour, shape, size, material), their
place on the floor (`position`, world units, and `rotation`, degrees) and, after rendering,
their pixel centre (`x`, `y`) and tight pixel box (`bbox`, x0 y0 x1 y1, end exclusive).
Objects never overlap on screen, whatever their shape, so an edit that swaps shapes in
place can never make two objects collide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from visionzero.pairs.clevr_geometry import COLOR_RGB, SIZE_RADIUS, Solid, camera, screen_boxes
from visionzero.pairs.clevr_render import render_scenes
from visionzero.settings.schema import ClevrSettings

FLOOR_EXTENT = 4.0  # objects stand in view and inside [-FLOOR_EXTENT, FLOOR_EXTENT]^2 (CLEVR: 3)
PLACE_TRIES = 100  # positions tried per object before the whole scene is sampled again
SCENE_TRIES = 40
GAP = 0.01  # smallest gap between two objects' screen boxes, as a share of the image side


@dataclass(frozen=True)
class ClevrObject:
    color: str
    shape: str
    size: str
    material: str
    position: tuple[float, float]  # (x, z) on the floor, world units
    rotation: float  # degrees about the vertical axis

    def solid(self, scale: float) -> Solid:
        return Solid(
            shape=self.shape,
            x=self.position[0],
            z=self.position[1],
            radius=SIZE_RADIUS[self.size] * scale,
            rotation=math.radians(self.rotation),
            color=COLOR_RGB[self.color],
            metal=self.material == "metal",
        )


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]  # rng.choice would build an array each call


def floor_points(uv: np.ndarray) -> np.ndarray:
    """Image points (N, 2: x, y as fractions of the side) -> the floor points (x, z) seen there."""
    cam = camera()
    u = (2 * uv[:, 0] - 1) * cam.tan_half
    v = (1 - 2 * uv[:, 1]) * cam.tan_half
    d = cam.forward + u[:, None] * cam.right + v[:, None] * cam.up
    t = -cam.origin[1] / np.minimum(d[:, 1], -1e-6)
    pts = cam.origin + t[:, None] * d
    return np.clip(pts[:, [0, 2]], -FLOOR_EXTENT, FLOOR_EXTENT)


def sample_scene(rng: np.random.Generator, cfg: ClevrSettings, size: int, scale: float) -> list[ClevrObject]:
    """Draw min..max_objects objects at places where their screen boxes stay apart and in the image.

    A scene where the drawn count does not fit is sampled again a few times; then the
    fullest attempt is kept ("place what fits"), as long as it holds at least `n_edits`
    objects. Only when not even that many fit is it an error (one line, naming the fix).
    """
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    gap, margin = GAP * size, 0.02 * size
    best: list[ClevrObject] = []
    for _ in range(SCENE_TRIES):
        objects: list[ClevrObject] = []
        boxes = np.empty((0, 4))
        for _ in range(count):
            size_name = _pick(rng, cfg.sizes)
            # try floor points seen anywhere in the image, a batch at a time; keep the first that fits
            for batch in (PLACE_TRIES // 4, PLACE_TRIES):
                xz = np.round(floor_points(rng.uniform(0, 1, size=(batch, 2))), 3)
                cand = screen_boxes(xz, SIZE_RADIUS[size_name] * scale, size)
                ok = (cand[:, :2] >= margin).all(axis=1) & (cand[:, 2:] <= size - margin).all(axis=1)
                for other in boxes:
                    ok &= (
                        (cand[:, 2] + gap <= other[0]) | (other[2] + gap <= cand[:, 0])
                        | (cand[:, 3] + gap <= other[1]) | (other[3] + gap <= cand[:, 1])
                    )
                if ok.any():
                    break
            else:
                break  # no room for this object: start the scene again
            k = int(np.argmax(ok))
            objects.append(ClevrObject(
                color=_pick(rng, cfg.colors),
                shape=_pick(rng, cfg.shapes),
                size=size_name,
                material=_pick(rng, cfg.materials),
                position=(float(xz[k, 0]), float(xz[k, 1])),
                rotation=round(float(rng.uniform(0, 360)), 1),
            ))
            boxes = np.vstack([boxes, cand[k]])
        if len(objects) == count:
            return objects
        if len(objects) > len(best):
            best = objects
    if len(best) >= max(1, cfg.n_edits):
        return best
    raise ValueError(
        f"cannot place {max(1, cfg.n_edits)} objects (object_scale {scale:g}) without overlap in a {size}px image; "
        "lower pairs.clevr.object_scale or raise pairs.image_size"
    )


def edit_scene(
    objects: list[ClevrObject], rng: np.random.Generator, cfg: ClevrSettings
) -> tuple[list[ClevrObject], list[int]]:
    """Give `cfg.n_edits` objects a new colour (and a new shape, in colour_and_shape mode).

    Positions, sizes, materials and rotations are kept. New attributes always differ from
    the old ones; combinations already in the scene are avoided when possible, so the spy's
    objects cannot be mistaken for another object of the original.
    """
    chosen = sorted(int(i) for i in rng.choice(len(objects), size=cfg.n_edits, replace=False))
    edited = list(objects)
    present = {(o.color, o.shape) for o in objects}
    for i in chosen:
        old = objects[i]
        shapes = [s for s in cfg.shapes if s != old.shape] if cfg.edit == "color_and_shape" else [old.shape]
        options = [(c, s) for c in cfg.colors if c != old.color for s in shapes]
        fresh = [o for o in options if o not in present]
        color, shape = (fresh or options)[int(rng.integers(len(fresh or options)))]
        edited[i] = replace(old, color=color, shape=shape)
        present.add((color, shape))
    return edited, chosen


def _graph(objects: list[ClevrObject], boxes: list[tuple[int, int, int, int]], scale: float, size: int) -> list[dict[str, Any]]:
    cam = camera()
    out = []
    for obj, box in zip(objects, boxes):
        s = obj.solid(scale)
        height = {"sphere": 2 * s.radius, "cube": math.sqrt(2) * s.radius, "cylinder": 1.8 * s.radius}[obj.shape]
        cx, cy = cam.project(np.array([[s.x, height / 2, s.z]]), size)[0]
        out.append({
            "color": obj.color, "shape": obj.shape, "size": obj.size, "material": obj.material,
            "x": round(float(cx), 1), "y": round(float(cy), 1), "bbox": list(box),
            "position": list(obj.position), "rotation": obj.rotation,
        })
    return out


def _union(a: list[int], b: list[int]) -> list[int]:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def make_clevr_pair(rng: np.random.Generator, cfg: ClevrSettings, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One (original, edited) pair: RGB arrays plus the manifest fields `scene`, `edited_scene`, `changes`."""
    objects = sample_scene(rng, cfg, size, cfg.object_scale)
    edited, chosen = edit_scene(objects, rng, cfg)
    scale = cfg.object_scale
    (img_a, boxes_a), (img_b, boxes_b) = render_scenes(
        [[o.solid(scale) for o in objects], [o.solid(scale) for o in edited]], size
    )
    scene, scene_b = _graph(objects, boxes_a, scale, size), _graph(edited, boxes_b, scale, size)
    changes = [
        {
            "object": i,
            "before": {"color": objects[i].color, "shape": objects[i].shape},
            "after": {"color": edited[i].color, "shape": edited[i].shape},
            "bbox": _union(scene[i]["bbox"], scene_b[i]["bbox"]),
        }
        for i in chosen
    ]
    return img_a, img_b, {"scene": scene, "edited_scene": scene_b, "changes": changes}
