"""Geometry of CLEVR-style scenes: objects, the camera, ray intersection, shadow outlines.

World: y is up, the floor is the plane y = 0 and objects stand on it. Each object has a
bounding cylinder (radius r, height 2r) that holds it whatever its shape: CLEVR's cube
(half side r/sqrt(2)), a sphere of radius r, a cylinder of radius and half height 0.9 r.
Rays are passed as component arrays (dx, dy, dz) of any one shape, which keeps the numpy
work element-wise and lets a single camera origin stay a scalar per component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# CLEVR's own palette (sRGB, from CLEVR's properties.json).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
# Radius of the bounding cylinder of each size, in world units (CLEVR: 0.35 and 0.7).
SIZE_RADIUS: dict[str, float] = {"small": 0.35, "large": 0.7}

CAMERA_DISTANCE = 11.5
CAMERA_ELEVATION = math.radians(40.0)
CAMERA_TARGET = np.array([0.0, 0.0, 0.4])
FOV = math.radians(32.0)
KEY_LIGHT = np.array([-0.55, 1.0, 0.45]) / np.linalg.norm([-0.55, 1.0, 0.45])
FILL_LIGHT = np.array([0.7, 0.5, 0.6]) / np.linalg.norm([0.7, 0.5, 0.6])


@dataclass(frozen=True)
class Solid:
    """One object in world coordinates: what the ray caster needs."""

    shape: str  # cube | sphere | cylinder
    x: float
    z: float
    radius: float  # bounding-cylinder radius; the shape fits inside it
    rotation: float  # radians about the vertical axis (cubes only)
    color: tuple[int, int, int]
    metal: bool


# ----------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class Camera:
    origin: np.ndarray
    forward: np.ndarray
    right: np.ndarray
    up: np.ndarray
    tan_half: float

    def project(self, points: np.ndarray, size: int) -> np.ndarray:
        """World points (N, 3) -> pixel coordinates (N, 2), pixel centres at integers + 0.5."""
        d = points - self.origin
        depth = d @ self.forward
        u = (d @ self.right) / (depth * self.tan_half)
        v = (d @ self.up) / (depth * self.tan_half)
        return np.stack([(u + 1) * size / 2, (1 - v) * size / 2], axis=1)


@lru_cache(maxsize=1)
def camera() -> Camera:
    """The fixed camera (CLEVR jitters it; a fixed one lets each process cache the floor)."""
    origin = CAMERA_TARGET + CAMERA_DISTANCE * np.array(
        [0.0, math.sin(CAMERA_ELEVATION), math.cos(CAMERA_ELEVATION)]
    )
    forward = CAMERA_TARGET - origin
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return Camera(origin, forward, right, up, math.tan(FOV / 2))


def ray_dirs(cam: Camera, size: int, x0: float, y0: float, w: int, h: int, ss: int) -> np.ndarray:
    """Unit ray directions (h*ss, w*ss, 3) for the sub-pixels of the pixel box at (x0, y0)."""
    xs = x0 + (np.arange(w * ss) + 0.5) / ss
    ys = y0 + (np.arange(h * ss) + 0.5) / ss
    u = (2 * xs / size - 1) * cam.tan_half
    v = (1 - 2 * ys / size) * cam.tan_half
    d = cam.forward + u[None, :, None] * cam.right + v[:, None, None] * cam.up
    return (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)


# A 16-gon around the unit circle (circumscribed, so it holds the circle) at floor and top height.
_RING = np.stack(np.broadcast_arrays(np.cos(np.arange(16) * np.pi / 8), np.sin(np.arange(16) * np.pi / 8)), 1) / math.cos(np.pi / 16)


def screen_boxes(xz: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Pixel boxes (N, 4: x0, y0, x1, y1) of bounding cylinders standing at floor points xz (N, 2).

    The bounding cylinder holds every shape of that size, so the box does not depend on shape.
    """
    cam = camera()
    n = len(xz)
    pts = np.empty((n, 2, 16, 3))
    pts[..., 0] = xz[:, None, None, 0] + radius * _RING[:, 0]
    pts[..., 2] = xz[:, None, None, 1] + radius * _RING[:, 1]
    pts[:, 0, :, 1] = 0.0
    pts[:, 1, :, 1] = 2 * radius
    pix = cam.project(pts.reshape(-1, 3), size).reshape(n, 32, 2)
    return np.concatenate([pix.min(axis=1), pix.max(axis=1)], axis=1)


def screen_box(solid: Solid, size: int) -> tuple[float, float, float, float]:
    """Pixel box (x0, y0, x1, y1) that holds the object, whatever its shape."""
    box = screen_boxes(np.array([[solid.x, solid.z]]), solid.radius, size)[0]
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


# ----------------------------------------------------------------------------- intersection
# Rays are given as component arrays (dx, dy, dz) of any one shape; the origin is a point
# (primary rays all start at the camera), so most terms below are scalars.
Vec = tuple[np.ndarray, np.ndarray, np.ndarray]


def _cube_half(solid: Solid) -> float:
    return solid.radius / math.sqrt(2)  # CLEVR: the cube's footprint diagonal equals the size


def _cyl_dims(solid: Solid) -> tuple[float, float]:
    return solid.radius * 0.9, 2 * solid.radius * 0.9  # radius, height


def _rotate(solid: Solid, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World -> object frame about the vertical axis (rotation by -solid.rotation)."""
    cs, sn = math.cos(solid.rotation), math.sin(solid.rotation)
    return cs * x - sn * z, sn * x + cs * z


def _point(o: np.ndarray) -> tuple[float, float, float]:
    # Python floats, not numpy float64 scalars: mixed with float32 arrays they keep float32
    return float(o[0]), float(o[1]), float(o[2])


def _box_slabs(solid: Solid, o: tuple[float, float, float], d: Vec) -> tuple[list, list, tuple, Vec, float]:
    """Slab test of rays against the cube, in the cube's own frame: near and far distances per axis."""
    a = _cube_half(solid)
    lox, loz = _rotate(solid, o[0] - solid.x, o[2] - solid.z)
    lo = (lox, o[1] - a, loz)
    ldx, ldz = _rotate(solid, d[0], d[2])
    near, far = [], []
    for lo_k, ld_k in zip(lo, (ldx, d[1], ldz)):
        inv = 1.0 / np.where(np.abs(ld_k) < 1e-9, np.float32(1e-9), ld_k)
        ta, tb = (-a - lo_k) * inv, (a - lo_k) * inv
        near.append(np.minimum(ta, tb))
        far.append(np.maximum(ta, tb))
    return near, far, lo, (ldx, d[1], ldz), a


def intersect(solid: Solid, origin: np.ndarray, d: Vec) -> np.ndarray:
    """Distance along each ray (one origin, directions d) to the object; inf where it misses."""
    o = _point(origin)
    if solid.shape == "sphere":
        r = solid.radius
        ox, oy, oz = o[0] - solid.x, o[1] - r, o[2] - solid.z
        b = d[0] * ox + d[1] * oy + d[2] * oz
        disc = b * b - (ox * ox + oy * oy + oz * oz - r * r)
        t = -b - np.sqrt(np.maximum(disc, 0))
        return np.where((disc > 0) & (t > 1e-4), t, np.inf)
    if solid.shape == "cube":
        near, far, *_ = _box_slabs(solid, o, d)
        t_in = np.maximum(np.maximum(near[0], near[1]), near[2])
        t_out = np.minimum(np.minimum(far[0], far[1]), far[2])
        return np.where((t_out >= t_in) & (t_in > 1e-4), t_in, np.inf)
    if solid.shape == "cylinder":
        r, height = _cyl_dims(solid)
        ox, oy, oz = o[0] - solid.x, o[1], o[2] - solid.z
        a = np.maximum(d[0] * d[0] + d[2] * d[2], 1e-12)
        b = 2 * (ox * d[0] + oz * d[2])
        disc = b * b - 4 * a * (ox * ox + oz * oz - r * r)
        ts = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        ys = oy + ts * d[1]
        t_side = np.where((disc > 0) & (ts > 1e-4) & (ys >= 0) & (ys <= height), ts, np.inf)
        tt = (height - oy) / np.where(np.abs(d[1]) < 1e-9, np.float32(-1e-9), d[1])
        cx, cz = ox + tt * d[0], oz + tt * d[2]
        t_top = np.where((tt > 1e-4) & (cx * cx + cz * cz <= r * r), tt, np.inf)
        return np.minimum(t_side, t_top)
    raise ValueError(f"unknown shape {solid.shape!r}")


def surface(solid: Solid, origin: np.ndarray, d: Vec, t: np.ndarray) -> tuple[Vec, np.ndarray]:
    """Unit normals and distance to the nearest edge (world units) at the hit points of rays that hit."""
    o = _point(origin)
    px, py, pz = o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]
    if solid.shape == "sphere":
        r = solid.radius
        return ((px - solid.x) / r, (py - r) / r, (pz - solid.z) / r), np.full_like(t, np.inf)
    if solid.shape == "cube":
        near, _, lo, ld, a = _box_slabs(solid, o, d)
        axis = np.where(near[0] >= near[1], np.where(near[0] >= near[2], 0, 2), np.where(near[1] >= near[2], 1, 2))
        local = [np.where(axis == k, -np.sign(ld[k]), 0).astype(np.float32) for k in range(3)]
        cs, sn = math.cos(solid.rotation), math.sin(solid.rotation)
        n = (cs * local[0] + sn * local[2], local[1], -sn * local[0] + cs * local[2])
        # on a face, the distance to its nearest edge is the middle one of a - |p_k|
        g = [a - np.abs(lo[k] + t * ld[k]) for k in range(3)]
        gap = g[0] + g[1] + g[2] - np.minimum(np.minimum(g[0], g[1]), g[2]) - np.maximum(np.maximum(g[0], g[1]), g[2])
        return n, gap
    r, height = _cyl_dims(solid)
    rx, rz = px - solid.x, pz - solid.z
    top = py >= height - 1e-3
    zero = np.zeros_like(t)
    n = (np.where(top, zero, rx / r), np.where(top, 1.0, zero).astype(np.float32), np.where(top, zero, rz / r))
    gap = np.where(top, r - np.sqrt(rx * rx + rz * rz), height - py)
    return n, gap


# ----------------------------------------------------------------------------- shadow outlines
_COS, _SIN = np.cos(np.arange(24) * np.pi / 12), np.sin(np.arange(24) * np.pi / 12)


def shadow_polygons(solid: Solid, size: int, cam: Camera) -> list[np.ndarray]:
    """Screen polygons whose union is the object's hard shadow on the floor.

    Convex pieces of the solid (cube faces, cylinder caps and the band between them, the
    sphere's great circle across the light) are pushed along the light onto y = 0; their
    union is the shadow, so no hull needs computing.
    """
    if solid.shape == "cube":
        a = _cube_half(solid)
        cs, sn = math.cos(solid.rotation), math.sin(solid.rotation)
        sx = np.array([-1, 1, 1, -1, -1, 1, 1, -1]) * a
        sz = np.array([-1, -1, 1, 1, -1, -1, 1, 1]) * a
        y = np.array([0, 0, 0, 0, 1, 1, 1, 1]) * 2 * a
        pts = np.stack([solid.x + cs * sx + sn * sz, y, solid.z - sn * sx + cs * sz], 1)
        faces = [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]
    elif solid.shape == "cylinder":
        # floor cap, top cap, and the band between them through the two rim points that lie
        # at right angles to the light: together they cover the whole shadow
        r, height = _cyl_dims(solid)
        ring = np.stack([solid.x + r * _COS, np.zeros_like(_COS), solid.z + r * _SIN], 1)
        top = ring + np.array([0.0, height, 0.0])
        side = np.array([-KEY_LIGHT[2], 0.0, KEY_LIGHT[0]])
        side *= r / np.linalg.norm(side)
        c = np.array([solid.x, 0.0, solid.z])
        band = np.array([c + side, c - side, c - side + [0, height, 0], c + side + [0, height, 0]])
        pts = np.concatenate([ring, top, band])
        k = len(_COS)
        faces = [list(range(k)), list(range(k, 2 * k)), [2 * k, 2 * k + 1, 2 * k + 2, 2 * k + 3]]
    else:  # sphere: the great circle at right angles to the light
        e1 = np.cross(KEY_LIGHT, [0.0, 0.0, 1.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(KEY_LIGHT, e1)
        c = np.array([solid.x, solid.radius, solid.z])
        pts = c + solid.radius * (_COS[:, None] * e1 + _SIN[:, None] * e2)
        faces = [list(range(len(_COS)))]
    floor = pts - (pts[:, 1:2] / KEY_LIGHT[1]) * KEY_LIGHT  # slide along the light to y = 0
    pix = cam.project(floor, size)
    return [pix[f] for f in faces]
