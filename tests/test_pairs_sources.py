"""User photo folders: bad files are skipped and named, odd modes converted, nothing outside is read."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from visionzero.pairs.sources import SourceError, load_rgb, scan_source

MIN = 32


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture()
def messy(tmp_path):
    """A folder with good images in every odd mode, plus corrupt, truncated, empty, tiny and foreign files."""
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "good.png")
    Image.fromarray(noise).save(root / "nested" / "sub.jpg")
    Image.fromarray(noise[..., 0]).save(root / "gray.png")  # L
    pal = Image.fromarray(noise).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[:, :40] = [200, 10, 10, 255]  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    deep = np.full((50, 70), 65535, np.uint16)
    deep[:, :35] = 32896  # = 128 * 257
    Image.fromarray(deep).save(root / "deep16.png")
    stored = Image.new("RGB", (90, 60), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red mark at the stored top left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: show rotated 90 degrees clockwise
    stored.save(root / "rotated.jpg", exif=exif, quality=95)

    good_png = _png_bytes(Image.fromarray(noise))
    (root / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "truncated.jpg").write_bytes(_png_bytes(Image.fromarray(noise), "JPEG")[:300])
    (root / "corrupt.png").write_bytes(rng.integers(0, 255, 500, dtype=np.uint8).tobytes())
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not a photo")
    Image.new("RGB", (20, 20)).save(root / "tiny.png")

    outside = tmp_path / "secret.png"
    Image.fromarray(noise).save(outside)
    os.symlink(outside, root / "link_out.png")
    os.symlink(root / "good.png", root / "link_in.png")
    return root


def test_messy_folder_is_scanned_skipping_and_naming_the_bad_files(messy):
    scan = scan_source(messy, MIN)
    assert scan.mode == "images"
    names = sorted(i.name for i in scan.items)
    assert names == ["deep16.png", "good.png", "gray.png", "link_in.png", "nested/sub.jpg", "palette.png",
                     "rgba.png", "rotated.jpg"]
    reasons = dict(scan.skipped)
    assert set(reasons) == {"truncated.png", "truncated.jpg", "corrupt.png", "empty.jpg", "notes.txt", "tiny.png",
                            "link_out.png"}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["notes.txt"] == "not an image"
    assert reasons["tiny.png"] == f"too small: 20x20, the minimum side is {MIN} px"
    assert reasons["link_out.png"] == "link leaves the folder"
    assert reasons["truncated.png"] in ("truncated", "corrupt") and reasons["corrupt.png"] == "corrupt"
    line = scan.summary(limit=20)
    assert line.startswith("skipped 7 file(s): ") and "\n" not in line
    assert all(name in line for name in reasons)


def test_odd_modes_become_upright_8_bit_rgb(messy):
    for item in scan_source(messy, MIN).items:
        arr = load_rgb(item.path)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    gray = load_rgb(messy / "gray.png")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    rgba = load_rgb(messy / "rgba.png")
    assert tuple(rgba[5, 5]) == (200, 10, 10) and tuple(rgba[5, 70]) == (255, 255, 255)  # alpha -> white
    deep = load_rgb(messy / "deep16.png")
    assert tuple(deep[0, 0]) == (128, 128, 128) and tuple(deep[0, 60]) == (255, 255, 255)
    rotated = load_rgb(messy / "rotated.jpg")
    assert rotated.shape == (90, 60, 3)  # EXIF orientation applied: taller than wide now
    assert rotated[3, 56, 0] > 200 and rotated[3, 56, 2] < 60  # the red mark moved to the top right
    pal = load_rgb(messy / "palette.png")
    assert pal.shape == (60, 80, 3)


def test_missing_empty_and_useless_folders_are_one_clear_error(tmp_path):
    with pytest.raises(SourceError, match="folder not found"):
        scan_source(tmp_path / "nope", MIN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no usable images$"):
        scan_source(tmp_path / "empty", MIN)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"garbage")
    with pytest.raises(SourceError, match=r"no usable images \(1 file\(s\) skipped\)"):
        scan_source(tmp_path / "junk", MIN)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="not a folder"):
        scan_source(tmp_path / "file.png", MIN)


def test_ready_pairs_in_the_official_layout(tmp_path):
    img = Image.new("RGB", (64, 48), (10, 120, 200))
    for name in ("a_original.png", "a_modified.png", "b_original.jpg", "b_modified.png", "c_original.png", "loose.png"):
        img.save(tmp_path / name)
    (tmp_path / "readme.txt").write_text("pairs")
    scan = scan_source(tmp_path, MIN)
    assert scan.mode == "pairs"
    assert [(i.name, os.path.basename(i.edited_path)) for i in scan.items] == [
        ("a_original.png", "a_modified.png"), ("b_original.jpg", "b_modified.png")]
    assert dict(scan.skipped) == {"c_original.png": "no matching _modified file", "loose.png": "not part of a pair",
                                  "readme.txt": "not an image"}


def test_ready_pairs_from_a_two_column_file_stay_inside_the_folder(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    img = Image.new("RGB", (64, 64), (200, 100, 0))
    for name in ("p.png", "q.png", "r.png"):
        img.save(root / name)
    img.save(tmp_path / "outside.png")
    (root / "pairs.csv").write_text("original,edited\np.png,q.png\n../outside.png,r.png\nr.png\n")
    scan = scan_source(root, MIN)
    assert [(i.name, os.path.basename(i.edited_path)) for i in scan.items] == [("p.png", "q.png")]
    assert dict(scan.skipped) == {"pairs.csv:3": "path leaves the folder", "pairs.csv:4": "expected two columns",
                                  "r.png": "not part of a pair"}


def test_a_pixel_bomb_is_skipped_by_its_header_with_bounded_memory(tmp_path):
    """A 1-bit PNG of a few KB that declares 12000x12000: decoded, it cost 1.7 GB. Now its
    header is read, it is skipped with the reason, and the scan's peak memory stays small
    (measured in a fresh process, its own peak RSS, against the same interpreter importing the
    same modules and scanning one ordinary photo)."""
    import subprocess
    import sys

    bomb_dir, plain_dir = tmp_path / "bomb", tmp_path / "plain"
    bomb_dir.mkdir()
    plain_dir.mkdir()
    Image.new("1", (12000, 12000)).save(bomb_dir / "bomb.png", optimize=True)
    assert (bomb_dir / "bomb.png").stat().st_size < 100_000
    Image.new("RGB", (300, 200), (10, 20, 30)).save(bomb_dir / "photo.png")
    Image.new("RGB", (300, 200), (10, 20, 30)).save(plain_dir / "photo.png")
    # the child's own peak: VmHWM starts afresh at exec (ru_maxrss would carry this process's peak over)
    probe = (
        "import re, sys\n"
        "from visionzero.pairs.sources import scan_source\n"
        "scan = scan_source(sys.argv[1], 64)\n"
        "peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "print(peak // 1024, scan.summary())\n"
    )
    peaks = {}
    for name, folder in (("bomb", bomb_dir), ("plain", plain_dir)):
        out = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        mb, summary = out.stdout.split(" ", 1)
        peaks[name] = int(mb)
        if name == "bomb":
            assert "bomb.png (too large: 12000x12000 is 144 MP, over photo.max_pixels (40 MP))" in summary
    assert peaks["bomb"] - peaks["plain"] < 50  # MB; decoding the bomb costs ~1,700


def test_images_are_checked_without_decoding_and_decoded_where_used(tmp_path, monkeypatch):
    """The scan reads headers and integrity only; pixels are decoded once, by the pair maker."""
    from visionzero.pairs import sources

    Image.new("RGB", (300, 200), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (300, 200), (10, 20, 30)).save(tmp_path / "b.jpg")
    decoded = []
    real = Image.Image.load

    def counting(self):
        if getattr(self, "tile", None) and self.size == (300, 200):  # pixels still to decode
            decoded.append(self.format)
        return real(self)

    monkeypatch.setattr(Image.Image, "load", counting)
    scan = scan_source(tmp_path, 64)
    assert len(scan.items) == 2 and decoded == []
    assert sources.load_rgb(tmp_path / "a.png").shape == (200, 300, 3) and decoded == ["PNG"]
    with pytest.raises(sources.BadImage, match="too large"):
        sources.load_rgb(tmp_path / "a.png", max_pixels=10_000)
