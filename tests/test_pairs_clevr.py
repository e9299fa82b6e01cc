"""CLEVR-style pairs: the edit is exactly what the change log says, and nothing else moves."""

from __future__ import annotations

import numpy as np
import pytest

from visionzero.pairs.clevr import ClevrObject, edit_scene, make_clevr_pair, sample_scene
from visionzero.pairs.clevr_render import render, shadow_region
from visionzero.settings.schema import ClevrSettings

SIZE = 128


def _solid(obj: dict, scale: float = 1.0):
    o = ClevrObject(obj["color"], obj["shape"], obj["size"], obj["material"], tuple(obj["position"]), obj["rotation"])
    return o.solid(scale)


@pytest.mark.parametrize("seed", range(6))
def test_two_objects_change_colour_and_shape_and_the_rest_stays(seed):
    cfg = ClevrSettings()
    a, b, fields = make_clevr_pair(np.random.default_rng(seed), cfg, SIZE)
    scene, edited, changes = fields["scene"], fields["edited_scene"], fields["changes"]
    assert cfg.min_objects <= len(scene) <= cfg.max_objects and len(edited) == len(scene)
    changed = {c["object"] for c in changes}
    assert len(changed) == cfg.n_edits
    for i, (before, after) in enumerate(zip(scene, edited)):
        if i in changed:
            assert before["color"] != after["color"] and before["shape"] != after["shape"]
            same_keys = ("size", "material", "position", "rotation")
            assert all(before[k] == after[k] for k in same_keys)
        else:
            assert before == after  # attributes, place and pixel box
    for c in changes:
        i = c["object"]
        assert c["before"] == {"color": scene[i]["color"], "shape": scene[i]["shape"]}
        assert c["after"] == {"color": edited[i]["color"], "shape": edited[i]["shape"]}

    # pixels: each changed object's box differs; outside the changed objects and their shadows, nothing does
    diff = np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 0
    allowed = np.zeros_like(diff)
    for c in changes:
        x0, y0, x1, y1 = c["bbox"]
        assert diff[y0:y1, x0:x1].mean() > 0.2
        allowed[y0:y1, x0:x1] = True
        for obj in (scene[c["object"]], edited[c["object"]]):
            sx0, sy0, sx1, sy1 = shadow_region(_solid(obj), SIZE)
            allowed[sy0:sy1, sx0:sx1] = True
    assert not diff[~allowed].any()


def test_objects_never_overlap_on_screen():
    cfg = ClevrSettings(min_objects=6, max_objects=6)
    for seed in range(5):
        scene = make_clevr_pair(np.random.default_rng(seed), cfg, SIZE)[2]["scene"]
        boxes = [o["bbox"] for o in scene]
        for i, p in enumerate(boxes):
            assert 0 <= p[0] < p[2] <= SIZE and 0 <= p[1] < p[3] <= SIZE
            for q in boxes[i + 1:]:
                assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]


def test_same_seed_same_pair_and_other_seed_other_pair():
    cfg = ClevrSettings()
    a1, b1, f1 = make_clevr_pair(np.random.default_rng(7), cfg, SIZE)
    a2, b2, f2 = make_clevr_pair(np.random.default_rng(7), cfg, SIZE)
    a3, _, f3 = make_clevr_pair(np.random.default_rng(8), cfg, SIZE)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and f1 == f2
    assert not np.array_equal(a1, a3) and f1["scene"] != f3["scene"]


def test_rendering_a_scene_graph_again_gives_the_same_image():
    cfg = ClevrSettings()
    a, _, fields = make_clevr_pair(np.random.default_rng(3), cfg, SIZE)
    again, boxes = render([_solid(o) for o in fields["scene"]], SIZE)
    assert np.array_equal(a, again)
    assert [list(b) for b in boxes] == [o["bbox"] for o in fields["scene"]]


def test_small_worlds_from_params_colour_only_edits():
    cfg = ClevrSettings(min_objects=2, max_objects=3, colors=["red", "blue", "green"], shapes=["cube", "sphere"],
                        sizes=["large"], object_scale=1.25, n_edits=1, edit="color")
    for seed in range(4):
        rng = np.random.default_rng(seed)
        objects = sample_scene(rng, cfg, 64, cfg.object_scale)
        assert 2 <= len(objects) <= 3 and all(o.size == "large" and o.color in cfg.colors for o in objects)
        edited, chosen = edit_scene(objects, rng, cfg)
        assert len(chosen) == 1
        i = chosen[0]
        assert edited[i].color != objects[i].color and edited[i].shape == objects[i].shape


def test_a_crowded_world_places_what_fits():
    cfg = ClevrSettings(min_objects=12, max_objects=12, sizes=["large"], object_scale=1.5)
    objects = sample_scene(np.random.default_rng(0), cfg, 112, cfg.object_scale)
    assert cfg.n_edits <= len(objects) < 12


@pytest.mark.parametrize("scale", [1.4, 2.0])
def test_large_objects_fit_in_small_images(scale):
    cfg = ClevrSettings(min_objects=2, max_objects=3, sizes=["large"], object_scale=scale, n_edits=1)
    for seed in range(10):
        assert len(sample_scene(np.random.default_rng(seed), cfg, 112, scale)) >= 1


def test_a_world_where_nothing_fits_is_a_clear_error():
    """At 112 px a large object at scale 3 is taller than the image."""
    cfg = ClevrSettings(min_objects=2, max_objects=2, sizes=["large"], object_scale=3.0, n_edits=1)
    with pytest.raises(ValueError, match="cannot place 1 objects"):
        sample_scene(np.random.default_rng(0), cfg, 112, cfg.object_scale)


def test_settings_reject_unknown_vocabulary():
    with pytest.raises(ValueError, match="unknown pink"):
        ClevrSettings(colors=["red", "pink"])
    with pytest.raises(ValueError, match="two shapes"):
        ClevrSettings(shapes=["cube"])
