"""Draw a chart spec with matplotlib (Agg, no pyplot state) and find where its parts landed.

`draw_chart` returns the RGB pixels and the pixel boxes of the artists that make up each
part of the spec (bars, wedges, tick labels, legend entries, line points), so the change
log can say where a swap shows. The style is fixed here rather than read from the user's
matplotlibrc, so the same spec gives the same pixels on any machine with this matplotlib.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Box = list[int]
EDGE_PAD = 2.0  # pixels added around artist extents: edge lines and anti-aliasing reach past them

# Everything not set here comes from matplotlib's built-in defaults, never from a matplotlibrc.
_STYLE = {k: v for k, v in matplotlib.rcParamsDefault.items() if k not in ("backend", "backend_fallback")}
_STYLE.update({
    "font.family": "DejaVu Sans",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "visionzero",
    "path.simplify": False,
})


# axes rectangles (left, bottom, width, height) in figure fractions, per chart kind
_AXES_RECT = {
    "bar": (0.15, 0.2, 0.8, 0.68),
    "line": (0.15, 0.16, 0.8, 0.72),
    "pie": (0.12, 0.06, 0.76, 0.80),
    "pie_legend": (0.03, 0.08, 0.66, 0.78),
}


def _box(extent: Any, height: int) -> Box:
    """Display coordinates (origin bottom left) -> pixel box (origin top left), rounded outwards."""
    x0, y0, x1, y1 = extent.x0 - EDGE_PAD, extent.y0 - EDGE_PAD, extent.x1 + EDGE_PAD, extent.y1 + EDGE_PAD
    return [int(np.floor(x0)), int(np.floor(height - y1)), int(np.ceil(x1)), int(np.ceil(height - y0))]


def _draw_bar(ax: Any, spec: dict[str, Any], fs: float) -> dict[str, list[Any]]:
    values = spec["series"][0]["values"]
    x = np.arange(len(values))
    bars = ax.bar(x, values, color=spec["colors"], width=0.7, edgecolor="#333333", linewidth=0.6,
                  label=None, zorder=2)
    ax.set_xticks(x, spec["labels"], rotation=30, ha="right", fontsize=fs * 0.9)
    ax.set_ylim(*spec["y_range"])
    ax.grid(axis="y", color="#dddddd", zorder=0)
    ax.set_xlabel(spec["x_label"], fontsize=fs)
    ax.set_ylabel(spec["y_label"], fontsize=fs)
    parts: dict[str, list[Any]] = {"bar": list(bars), "tick": list(ax.get_xticklabels()), "legend": []}
    if spec["legend"]:
        leg = ax.legend(bars, spec["labels"], fontsize=fs * 0.8, loc="upper right", ncols=2, framealpha=0.9)
        parts["legend"] = [leg]
    return parts


def _draw_line(ax: Any, spec: dict[str, Any], fs: float) -> dict[str, list[Any]]:
    x = np.arange(len(spec["labels"]))
    lines = []
    for series, color in zip(spec["series"], spec["colors"]):
        (line,) = ax.plot(x, series["values"], color=color, marker="o", markersize=fs * 0.5,
                          linewidth=fs * 0.22, label=series["name"], zorder=2)
        lines.append(line)
    ax.set_xticks(x, spec["labels"], fontsize=fs * 0.9, rotation=30 if len(spec["labels"][0]) > 4 else 0)
    ax.set_ylim(*spec["y_range"])
    ax.grid(color="#e3e3e3", zorder=0)
    ax.set_xlabel(spec["x_label"], fontsize=fs)
    ax.set_ylabel(spec["y_label"], fontsize=fs)
    leg = ax.legend(fontsize=fs * 0.85, loc="upper left", ncols=len(lines), framealpha=0.9)
    return {"line": lines, "legend": [leg]}


def _draw_pie(ax: Any, spec: dict[str, Any], fs: float) -> dict[str, list[Any]]:
    # with a legend the wedges go unlabelled, as in most published pies
    wedges, texts, pcts = ax.pie(
        spec["series"][0]["values"], labels=None if spec["legend"] else spec["labels"],
        colors=spec["colors"], autopct="%1.0f%%",
        startangle=90, counterclock=False, pctdistance=0.75, labeldistance=1.08,
        wedgeprops={"edgecolor": "white", "linewidth": 1.0}, textprops={"fontsize": fs * 0.85},
    )
    ax.set_aspect("equal")
    labels: list[Any] = [None] * len(wedges) if spec["legend"] else list(texts)  # None: not drawn
    parts: dict[str, list[Any]] = {"wedge": list(wedges), "label": labels, "pct": list(pcts), "legend": []}
    if spec["legend"]:
        leg = ax.legend(wedges, spec["labels"], fontsize=fs * 0.85, loc="center left", bbox_to_anchor=(1.0, 0.5))
        parts["legend"] = [leg]
    return parts


def draw_chart(spec: dict[str, Any], size: int) -> tuple[np.ndarray, dict[str, list[Box]]]:
    """Render the spec to a size x size RGB array; return it with the pixel boxes of its parts.

    Part names: bar, tick, wedge, label, pct, line (one box per series), point/<series> (per
    category: the marker and the segments to its neighbours), legend (one box: a swap inside
    a legend can shift the entries between the two, as text heights and widths differ).
    """
    dpi = 100
    fs = 9.0 * size / 448  # font size that keeps the layout the same at any image size
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        # fixed margins instead of tight_layout: half the drawing time, and the plot area does
        # not move when a swap changes the width of a label
        ax = fig.add_axes(_AXES_RECT[spec["kind"] if spec["kind"] != "pie" or not spec["legend"] else "pie_legend"])
        draw = {"bar": _draw_bar, "line": _draw_line, "pie": _draw_pie}[spec["kind"]]
        parts = draw(ax, spec, fs)
        ax.tick_params(labelsize=fs * 0.9)
        fig.suptitle(spec["title"], fontsize=fs * 1.25, fontweight="bold", y=0.97)
        canvas.draw()
        renderer = canvas.get_renderer()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        boxes: dict[str, list[Box]] = {}
        for name, artists in parts.items():
            if name == "line":
                continue
            boxes[name] = [_box(a.get_window_extent(renderer), size) if a is not None else [0, 0, 0, 0]
                           for a in artists]
        if spec["kind"] == "line":
            boxes["line"] = [_box(line.get_window_extent(renderer), size) for line in parts["line"]]
            pad = fs * 0.8 * dpi / 72  # marker radius and line width, in pixels
            for s, line in enumerate(parts["line"]):
                pts = ax.transData.transform(np.column_stack(line.get_data()))
                for i in range(len(pts)):
                    near = pts[max(0, i - 1): i + 2]
                    boxes.setdefault(f"point/{s}", []).append(_box_from_points(near, pad, size))
    return pixels, boxes


def _box_from_points(pts: np.ndarray, pad: float, height: int) -> Box:
    x0, y0 = pts.min(axis=0) - pad
    x1, y1 = pts.max(axis=0) + pad
    return [int(np.floor(x0)), int(np.floor(height - y1)), int(np.ceil(x1)), int(np.ceil(height - y0))]
