"""Photo pairs: pixels change inside the recorded boxes and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionzero.pairs.photo_edits import edit_photo
from visionzero.pairs.photos import diff_regions, make_photo_pair
from visionzero.pairs.sources import SourceItem, load_rgb, skimage_photos
from visionzero.settings.schema import PhotoSettings

SIZE = 128


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, shipped in the package), at test size."""
    item = next(i for i in skimage_photos() if i.name == "skimage:astronaut")
    return np.asarray(Image.fromarray(load_rgb(item.path)).resize((SIZE, SIZE)))


def _outside(boxes: list[list[int]], shape: tuple[int, ...]) -> np.ndarray:
    mask = np.ones(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = False
    return mask


@pytest.mark.parametrize("kind", ["recolor", "remove", "paste", "swap", "mirror"])
def test_each_edit_changes_its_boxes_and_nothing_else(photo, kind):
    for seed in range(4):
        edited, regions = edit_photo(photo, np.random.default_rng(seed), [kind], n_edits=2)
        assert 1 <= len(regions) <= (4 if kind == "swap" else 2)
        assert {r["kind"] for r in regions} == {kind}
        diff = np.abs(edited.astype(int) - photo.astype(int)).max(axis=-1)
        boxes = [r["box"] for r in regions]
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            assert diff[y0:y1, x0:x1].mean() > 5  # visibly changed
        assert not diff[_outside(boxes, photo.shape)].any()
        if kind in ("paste", "swap"):
            assert all(r["source"] != r["box"] for r in regions)


def test_a_flat_image_still_gets_a_visible_change():
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)
    edited, regions = edit_photo(flat, np.random.default_rng(0), ["recolor", "mirror", "paste"], 1)
    assert regions and regions[0]["kind"] == "invert"
    x0, y0, x1, y1 = regions[0]["box"]
    assert np.abs(edited[y0:y1, x0:x1].astype(int) - 128).min() > 100
    assert not np.abs(edited.astype(int) - flat)[_outside([regions[0]["box"]], flat.shape)].any()


def test_pairs_from_scikit_image_photos_are_deterministic():
    cfg = PhotoSettings()
    items = skimage_photos()
    assert len(items) >= 5  # the offline default needs a few real photos
    a1, b1, f1 = make_photo_pair(np.random.default_rng(3), cfg, SIZE, items[1])
    a2, b2, f2 = make_photo_pair(np.random.default_rng(3), cfg, SIZE, items[1])
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and f1 == f2
    assert a1.shape == (SIZE, SIZE, 3) and not np.array_equal(a1, b1)
    assert f1["source"] == items[1].name and f1["regions"] == f1["changes"]


def test_ready_pairs_get_boxes_from_their_difference(tmp_path, photo):
    edited = photo.copy()
    edited[20:50, 30:70] = [0, 200, 0]
    Image.fromarray(photo).save(tmp_path / "x_original.png")
    Image.fromarray(edited).save(tmp_path / "x_modified.png")
    item = SourceItem("x_original.png", str(tmp_path / "x_original.png"), str(tmp_path / "x_modified.png"))
    a, b, fields = make_photo_pair(np.random.default_rng(0), PhotoSettings(), SIZE, item)
    assert np.array_equal(a, photo) and np.array_equal(b, edited)
    (box,) = [r["box"] for r in fields["regions"]]
    assert box[0] <= 30 and box[1] <= 20 and box[2] >= 70 and box[3] >= 50  # holds the change
    assert (box[2] - box[0]) * (box[3] - box[1]) < 2 * 30 * 40  # and not much more
    assert diff_regions(photo, photo) == []
