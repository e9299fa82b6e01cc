"""Where real photos come from, and loading them safely.

Three sources: a user folder of images, a user folder of ready pairs (the official layout
`<name>_original.<ext>` + `<name>_modified.<ext>`, or a two-column `pairs.csv`/`pairs.tsv`),
and, by default, the photographs that ship inside scikit-image (read from the package
folder: no download, no network).

Bad input never stops a run: corrupt, truncated, empty and non-image files are skipped and
named in one summary line; images below the minimum size or over the pixel budget
(`photo.max_pixels`, checked on the declared size BEFORE any pixel is decoded: a 17 KB PNG
can declare 12000x12000) are rejected with the reason. The folder scan reads headers and
checks integrity without decoding pixels (PNG chunks and CRCs, the JPEG end marker); the
one decode happens where the pair is made;
grey, palette, alpha, 16-bit and EXIF-rotated images are converted to upright 8-bit RGB.
Nothing outside the given folder is read: a symlink that leaves it is skipped, and so is a
manifest row that points outside it.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
PAIR_MANIFESTS = ("pairs.csv", "pairs.tsv", "pairs.txt")
# Photographs inside scikit-image's package folder (skimage.data); those needing a download are left out.
SKIMAGE_PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg",
                  "motorcycle_left.png", "camera.png", "coins.png", "moon.png"]


class SourceError(ValueError):
    """A photo source that cannot be used at all (missing, empty); one line for a human."""


class BadImage(ValueError):
    """One file that cannot be used; the message is the reason."""


@dataclass(frozen=True)
class SourceItem:
    """One usable source: a photo to edit, or a ready (original, edited) pair."""

    name: str  # provenance, as written to the manifest: a path relative to the folder, or skimage:<name>
    path: str  # absolute path of the image (of the original, for a pair)
    edited_path: str | None = None  # set for a ready pair


@dataclass
class SourceScan:
    mode: Literal["skimage", "images", "pairs"]
    items: list[SourceItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def summary(self, limit: int = 8) -> str | None:
        """One line naming the skipped files, or None when nothing was skipped."""
        if not self.skipped:
            return None
        named = ", ".join(f"{name} ({reason})" for name, reason in self.skipped[:limit])
        more = f", and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} file(s): {named}{more}"


# ----------------------------------------------------------------------------- loading
def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> 8-bit RGB array. Alpha is flattened onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            top = 65535.0
        elif im.mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else float(arr.max())
        else:  # 32-bit integer: 16-bit PNGs may open this way
            peak = float(arr.max(initial=0))
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


DEFAULT_MAX_PIXELS = 40_000_000  # photo.max_pixels' default (an 8K photo is 33 MP)


def _check_size(im: Image.Image, min_size: int, max_pixels: int) -> None:
    """The declared size against the limits: Pillow has read only the header so far."""
    w, h = im.size
    if w * h > max_pixels:
        raise BadImage(f"too large: {w}x{h} is {w * h / 1e6:.0f} MP, over photo.max_pixels ({max_pixels / 1e6:g} MP)")
    if min(h, w) < min_size:
        raise BadImage(f"too small: {w}x{h}, the minimum side is {min_size} px")


def _opened(path: Path, work, min_size: int, max_pixels: int):
    """work(image) on the lazily opened file, its declared size checked first; Pillow's
    and the file system's errors become BadImage with a short reason."""
    try:
        if path.stat().st_size == 0:
            raise BadImage("empty file")
        with Image.open(path) as im:
            _check_size(im, min_size, max_pixels)
            return work(im)
    except BadImage:
        raise
    except UnidentifiedImageError:  # with an image's name it is a broken image, else some other file
        raise BadImage("corrupt" if path.suffix.lower() in IMAGE_EXTS else "not an image") from None
    except Image.DecompressionBombError:
        raise BadImage("too many pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, SystemError) as exc:
        msg = str(exc).lower()
        raise BadImage("truncated" if "truncated" in msg else "corrupt") from None


def load_rgb(path: str | Path, min_size: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a file to an upright 8-bit RGB array; raise BadImage with a short reason."""

    def decode(im: Image.Image) -> np.ndarray:
        im.load()  # decode now: truncated files fail here, not later
        return _to_rgb(ImageOps.exif_transpose(im))

    return _opened(Path(path), decode, min_size, max_pixels)


def check_image(path: str | Path, min_size: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise BadImage unless the file is a whole image within the limits, decoding as little
    as its format allows: PNG is checked chunk by chunk (CRCs, the end chunk) and JPEG by its
    end marker, without inflating a pixel; other formats are decoded (within the budget)."""
    path = Path(path)

    def check(im: Image.Image) -> None:
        if im.format == "PNG":
            im.verify()
        elif im.format == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - 64))
                if b"\xff\xd9" not in f.read():
                    raise BadImage("truncated")
        else:
            im.load()

    _opened(path, check, min_size, max_pixels)


# ----------------------------------------------------------------------------- folders
def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _files(root: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    """Regular files under root, sorted, without following links that leave it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            if (base / d).is_symlink() and not _inside(base / d, root):
                skipped.append((str((base / d).relative_to(root)), "link leaves the folder"))
        for name in sorted(filenames):
            p = base / name
            if name.startswith("."):
                continue
            if p.is_symlink() and not _inside(p, root):
                skipped.append((str(p.relative_to(root)), "link leaves the folder"))
            elif p.is_file():
                out.append(p)
    return out


def _pair_rows(manifest: Path, root: Path, skipped: list[tuple[str, str]]) -> list[tuple[Path, Path]]:
    """Rows (original, edited) of a two-column pairs file; paths are relative to the folder."""
    text = manifest.read_text(encoding="utf-8", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delim = "\t" if manifest.suffix == ".tsv" or "\t" in first else ","
    rows = []
    for n, row in enumerate(csv.reader(text.splitlines(), delimiter=delim), 1):
        cells = [c.strip() for c in row if c.strip()]
        if not cells or cells[0].startswith("#"):
            continue
        where = f"{manifest.name}:{n}"
        if len(cells) != 2:
            skipped.append((where, "expected two columns"))
            continue
        a, b = (root / c for c in cells)
        if n == 1 and not a.exists() and not b.exists():
            continue  # a header row
        if not (_inside(a, root) and _inside(b, root)):
            skipped.append((where, "path leaves the folder"))
            continue
        rows.append((a, b))
    return rows


def _split_name(p: Path) -> tuple[str, str] | None:
    """`x/cat_original.png` -> ("x/cat", "original")."""
    stem = p.stem
    for tag in ("original", "modified"):
        if stem.endswith("_" + tag):
            return str(p.parent / stem[: -len(tag) - 1]), tag
    return None


def scan_source(folder: str | Path | None, min_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> SourceScan:
    """List the usable photos or pairs of a folder (None: scikit-image's photos), checking each
    file (check_image: headers and integrity, no full decode)."""
    if folder is None or str(folder) == "":
        return SourceScan("skimage", skimage_photos())
    root_given = Path(folder).expanduser()
    if not root_given.exists():
        raise SourceError(f"photo source {folder}: folder not found")
    if not root_given.is_dir():
        raise SourceError(f"photo source {folder}: not a folder")
    root = root_given.resolve()
    skipped: list[tuple[str, str]] = []
    files = _files(root, skipped)
    rel = lambda p: str(p.relative_to(root)) if p.is_relative_to(root) else str(p)  # noqa: E731

    manifest = next((root / m for m in PAIR_MANIFESTS if (root / m).is_file()), None)
    tagged = {_split_name(p): p for p in files if p.suffix.lower() in IMAGE_EXTS and _split_name(p)}
    if manifest is not None:
        rows = _pair_rows(manifest, root, skipped)
        mode = "pairs"
    elif tagged:
        rows = []
        for (stem, tag), p in sorted(tagged.items()):
            other = tagged.get((stem, "modified" if tag == "original" else "original"))
            if other is None:
                skipped.append((rel(p), f"no matching _{'modified' if tag == 'original' else 'original'} file"))
            elif tag == "original":
                rows.append((p, other))
        mode = "pairs"
    else:
        rows = []
        mode = "images"

    items: list[SourceItem] = []
    if mode == "pairs":
        named = {name for name, _ in skipped}
        used = {p.resolve() for row in rows for p in row} | ({manifest} if manifest else set())
        for p in files:
            if p.resolve() not in used and rel(p) not in named:
                is_image = p.suffix.lower() in IMAGE_EXTS
                skipped.append((rel(p), "not part of a pair" if is_image else "not an image"))
        for a, b in rows:
            try:
                check_image(a, min_size, max_pixels)
                check_image(b, min_size, max_pixels)
            except BadImage as exc:
                skipped.append((f"{rel(a)} + {rel(b)}", str(exc)))
                continue
            except OSError:
                skipped.append((f"{rel(a)} + {rel(b)}", "missing file"))
                continue
            items.append(SourceItem(name=rel(a), path=str(a), edited_path=str(b)))
    else:
        for p in files:
            try:
                check_image(p, min_size, max_pixels)
            except BadImage as exc:
                skipped.append((rel(p), str(exc)))
                continue
            items.append(SourceItem(name=rel(p), path=str(p)))
    if not items:
        detail = f" ({len(skipped)} file(s) skipped)" if skipped else ""
        kind = "image pairs" if mode == "pairs" else "images"
        raise SourceError(f"photo source {folder}: no usable {kind}{detail}")
    return SourceScan(mode, items, skipped)


def skimage_photos() -> list[SourceItem]:
    """The photographs shipped inside scikit-image's package folder (those present)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("no photo source given and scikit-image is not installed")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    items = [SourceItem(name=f"skimage:{Path(f).stem}", path=str(data / f)) for f in SKIMAGE_PHOTOS if (data / f).is_file()]
    if not items:
        raise SourceError(f"no photo source given and no photos found in {data}")
    return items
