"""A contact sheet for people: sample pairs side by side, changed areas outlined in red."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from visionzero.pairs.imageio import save_png
from visionzero.pairs.manifest import PairRecord, read_manifest

OUTLINE = (230, 20, 20)
BACKGROUND = (255, 255, 255)
TEXT = (30, 30, 30)


def describe(record: PairRecord) -> str:
    """A short human summary of what changed."""
    if record.domain == "clevr":
        return "; ".join(
            f"{c['before']['color']} {c['before']['shape']} -> {c['after']['color']} {c['after']['shape']}"
            for c in record.changes
        )
    if record.domain == "chart":
        c = record.changes[0]
        a, b = c["before"]
        return f"{record.spec['kind'] if record.spec else 'chart'}: swap {c['kind']} {a} <-> {b}"
    kinds = [r["kind"] for r in record.regions or []]
    return ", ".join(kinds) if kinds else "no visible change found"


def _thumb(path: Path, side: int) -> tuple[Image.Image, float]:
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        return im.resize(size, Image.Resampling.LANCZOS), scale


def _pick(records: list[PairRecord], n: int) -> list[PairRecord]:
    """n records spread evenly over the manifest (training and eval alike), always the same ones."""
    if len(records) <= n:
        return records
    step = len(records) / n
    return [records[int(k * step)] for k in range(n)]


def make_contact_sheet(root: str | Path, out_path: str | Path, n: int = 8, thumb: int = 256, cols: int = 2,
                       records: list[PairRecord] | None = None) -> Path:
    """Draw `n` pairs of the dataset in `root` into one PNG at `out_path` and return its path."""
    root, out_path = Path(root), Path(out_path)
    chosen = _pick(records if records is not None else read_manifest(root), n)
    font = ImageFont.load_default(size=max(10, thumb // 18))
    pad, caption = 8, max(14, thumb // 18) * 2 + 6
    cell_w, cell_h = 2 * thumb + 3 * pad, thumb + caption + 2 * pad
    rows = max(1, (len(chosen) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    width = max(2, thumb // 128)
    for k, record in enumerate(chosen):
        x, y = (k % cols) * cell_w + pad, (k // cols) * cell_h + pad
        for j, rel in enumerate((record.original, record.edited)):
            img, scale = _thumb(root / rel, thumb)
            ox, oy = x + j * (thumb + pad), y
            sheet.paste(img, (ox, oy))
            for x0, y0, x1, y1 in record.boxes():
                draw.rectangle([ox + x0 * scale, oy + y0 * scale, ox + x1 * scale - 1, oy + y1 * scale - 1],
                               outline=OUTLINE, width=width)
        draw.text((x, y + thumb + 4), f"{record.id}  (original | edited)", fill=TEXT, font=font)
        draw.text((x, y + thumb + 4 + caption // 2), describe(record)[:90], fill=TEXT, font=font)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_png(sheet, out_path)
    return out_path
