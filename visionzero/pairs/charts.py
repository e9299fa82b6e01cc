"""Chart specs and their edits: the data side of the chart domain (no drawing here).

A spec is plain JSON: kind (bar | line | pie), title, axis labels, category `labels`,
`series` (name + values), `colors` (one per category for bar and pie, one per series for
line), `y_range` and `legend`. The edit swaps two entries of one attribute, as the paper
does with GPT-4o on ChartQA specs: two values, two labels or two colours. The change log
names every JSON path that differs, so a test can check that nothing else moved.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from visionzero.settings.schema import ChartSettings

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
YEARS = [str(y) for y in range(2013, 2027)]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
QUARTERS = ["Q1 2023", "Q2 2023", "Q3 2023", "Q4 2023", "Q1 2024", "Q2 2024", "Q3 2024", "Q4 2024",
            "Q1 2025", "Q2 2025", "Q3 2025", "Q4 2025"]

# (title, axis label of the categories, category pool, value label, value range)
CATEGORY_TOPICS: list[tuple[str, str, list[str], str, tuple[int, int]]] = [
    ("Fruit sold at the market", "Fruit", ["Apples", "Bananas", "Cherries", "Grapes", "Mangoes", "Oranges",
     "Pears", "Plums", "Kiwis", "Lemons", "Peaches", "Melons"], "Crates", (10, 400)),
    ("Electricity by source", "Source", ["Coal", "Gas", "Nuclear", "Hydro", "Wind", "Solar", "Biomass",
     "Oil", "Geothermal", "Tidal"], "TWh", (5, 300)),
    ("Team points this season", "Team", ["Lions", "Tigers", "Bears", "Wolves", "Eagles", "Sharks", "Hawks",
     "Foxes", "Owls", "Bulls"], "Points", (10, 90)),
    ("Visitors by city", "City", ["Oslo", "Lima", "Cairo", "Perth", "Quito", "Seoul", "Dakar", "Hanoi",
     "Porto", "Tunis", "Riga", "Bern"], "Visitors (k)", (20, 900)),
    ("Books borrowed by genre", "Genre", ["Fantasy", "History", "Poetry", "Science", "Travel", "Crime",
     "Cooking", "Art", "Drama", "Sports"], "Loans", (30, 600)),
    ("Favourite pets in class", "Pet", ["Dogs", "Cats", "Fish", "Birds", "Rabbits", "Hamsters", "Turtles",
     "Lizards", "Horses"], "Pupils", (2, 40)),
]
# (title, x label, ordered x pool, value label, series-name pool, value range)
SERIES_TOPICS: list[tuple[str, str, list[str], str, list[str], tuple[int, int]]] = [
    ("Monthly rainfall", "Month", MONTHS, "Rain (mm)", ["Bergen", "Madrid", "Vienna", "Dublin", "Rome"], (5, 220)),
    ("Yearly revenue", "Year", YEARS, "Revenue ($M)", ["Product A", "Product B", "Product C", "Product D"], (10, 500)),
    ("Daily website visits", "Day", WEEKDAYS, "Visits (k)", ["Mobile", "Desktop", "Tablet"], (5, 120)),
    ("Quarterly orders", "Quarter", QUARTERS, "Orders", ["North", "South", "East", "West"], (50, 900)),
    ("Average temperature", "Month", MONTHS, "Temperature (C)", ["Lagos", "Oslo", "Tokyo", "Denver"], (0, 35)),
]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#e7ba52"]
MIN_VALUE_GAP = 0.15  # swapped values differ by at least this share of the value range, when possible


def _values(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[int]:
    return [int(v) for v in rng.integers(lo, hi + 1, size=n)]


def _y_range(values: list[int], headroom: float) -> list[int]:
    """From 0 to a round number above the maximum, with room at the top for a legend."""
    top = max(values)
    step = 10 ** max(0, len(str(top)) - 1) / 2
    return [0, int(np.ceil(top * headroom / step) * step)]


def sample_spec(rng: np.random.Generator, cfg: ChartSettings) -> dict[str, Any]:
    """A random chart spec of one of `cfg.kinds`, with `cfg.min_values..max_values` categories."""
    kind = str(rng.choice(cfg.kinds))
    n = int(rng.integers(cfg.min_values, cfg.max_values + 1))
    colors = [str(c) for c in rng.permutation(PALETTE)]
    if kind == "line":
        title, x_label, pool, y_label, names, (lo, hi) = SERIES_TOPICS[int(rng.integers(len(SERIES_TOPICS)))]
        start = int(rng.integers(0, len(pool) - n + 1))
        n_series = int(rng.integers(2, min(3, len(names)) + 1))
        series = [{"name": str(s), "values": _values(rng, n, lo, hi)}
                  for s in rng.choice(names, size=n_series, replace=False)]
        return {
            "kind": kind, "title": title, "x_label": x_label, "y_label": y_label,
            "labels": pool[start:start + n], "series": series, "colors": colors[:n_series],
            "y_range": _y_range([v for s in series for v in s["values"]], 1.3), "legend": True,
        }
    title, x_label, pool, y_label, (lo, hi) = CATEGORY_TOPICS[int(rng.integers(len(CATEGORY_TOPICS)))]
    labels = [str(s) for s in rng.choice(pool, size=min(n, len(pool)), replace=False)]
    values = _values(rng, len(labels), lo, hi)
    spec = {
        "kind": kind, "title": title, "x_label": x_label, "y_label": y_label,
        "labels": labels, "series": [{"name": y_label, "values": values}], "colors": colors[:len(labels)],
        "legend": kind == "pie" or bool(rng.integers(2)),
    }
    if kind == "bar":
        spec["y_range"] = _y_range(values, 1.45 if spec["legend"] else 1.1)
    return spec


def _pick_two(rng: np.random.Generator, n: int) -> list[int]:
    return sorted(int(i) for i in rng.choice(n, size=2, replace=False))


def _value_pair(rng: np.random.Generator, values: list[int], span: float) -> list[int]:
    """Two positions whose values differ clearly (a swap of near-equal values is invisible)."""
    n = len(values)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if abs(values[i] - values[j]) >= MIN_VALUE_GAP * span]
    if not pairs:  # all values close: take the most different pair
        pairs = [max(((i, j) for i in range(n) for j in range(i + 1, n)), key=lambda p: abs(values[p[0]] - values[p[1]]))]
    i, j = pairs[int(rng.integers(len(pairs)))]
    return [i, j]


def edit_spec(spec: dict[str, Any], rng: np.random.Generator, cfg: ChartSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Swap two values, two labels or two colours (kind drawn from `cfg.edit_kinds`).

    Returns the edited copy and the change: kind, the JSON `paths` of the two swapped
    entries (``series/0/values/3``), their `before` and `after` values, and `indices`.
    """
    new = copy.deepcopy(spec)
    kind = str(rng.choice(cfg.edit_kinds))
    if kind == "values":
        s = int(rng.integers(len(spec["series"])))
        values = spec["series"][s]["values"]
        span = (spec.get("y_range") or [0, max(values)])[1]
        i, j = _value_pair(rng, values, span)
        paths = [f"series/{s}/values/{i}", f"series/{s}/values/{j}"]
        extra = {"series": s}
    elif kind == "labels" and spec["kind"] == "line":  # a line chart's labels are its series names
        i, j = _pick_two(rng, len(spec["series"]))
        paths, extra = [f"series/{i}/name", f"series/{j}/name"], {}
    elif kind == "labels":
        i, j = _pick_two(rng, len(spec["labels"]))
        paths, extra = [f"labels/{i}", f"labels/{j}"], {}
    else:
        i, j = _pick_two(rng, len(spec["colors"]))
        paths, extra = [f"colors/{i}", f"colors/{j}"], {}
    a, b = get_path(spec, paths[0]), get_path(spec, paths[1])
    set_path(new, paths[0], b)
    set_path(new, paths[1], a)
    change = {"kind": kind, "indices": [i, j], "paths": paths, "before": [a, b], "after": [b, a], **extra}
    return new, change


def get_path(doc: Any, path: str) -> Any:
    for part in path.split("/"):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def set_path(doc: Any, path: str, value: Any) -> None:
    *head, last = path.split("/")
    for part in head:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def diff_paths(a: Any, b: Any, prefix: str = "") -> set[str]:
    """JSON paths of the leaves where two specs differ (a changed length counts at the list)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in set(a) | set(b):
            if key not in a or key not in b:
                out.add(prefix + str(key))
            else:
                out |= diff_paths(a[key], b[key], f"{prefix}{key}/")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return {prefix.rstrip("/")}
        out = set()
        for k, (x, y) in enumerate(zip(a, b)):
            out |= diff_paths(x, y, f"{prefix}{k}/")
        return out
    return set() if a == b else {prefix.rstrip("/")}


def _changed_parts(spec: dict[str, Any], change: dict[str, Any]) -> list[tuple[str, int]]:
    """The drawn parts (name, index) where a swap shows."""
    i, j = change["indices"]
    kind, chart = change["kind"], spec["kind"]
    legend = [("legend", 0)] if spec.get("legend") else []
    if kind == "values":
        if chart == "bar":
            return [("bar", i), ("bar", j)]
        if chart == "line":
            return [(f"point/{change['series']}", i), (f"point/{change['series']}", j)]
        # pie: every wedge between the two turns (its box is the union, see make_chart_pair)
        return [(p, k) for k in range(i, j + 1) for p in ("wedge", "label", "pct")]
    if kind == "labels":
        return {"bar": [("tick", i), ("tick", j)], "line": [], "pie": [("label", i), ("label", j)]}[chart] + legend
    return {"bar": [("bar", i), ("bar", j)], "line": [("line", i), ("line", j)],
            "pie": [("wedge", i), ("wedge", j)]}[chart] + legend


def make_chart_pair(rng: np.random.Generator, cfg: ChartSettings, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One (original, edited) chart pair plus the manifest fields `spec`, `edited_spec`, `changes`.

    Each change carries `bboxes`: pixel boxes (both images) of the parts where the swap shows.
    """
    from visionzero.pairs.chart_draw import draw_chart  # matplotlib loads only when charts are made

    spec = sample_spec(rng, cfg)
    edited, change = edit_spec(spec, rng, cfg)
    img_a, parts_a = draw_chart(spec, size)
    img_b, parts_b = draw_chart(edited, size)
    boxes = []
    for name, k in _changed_parts(spec, change):
        a, b = parts_a[name][k], parts_b[name][k]
        box = [max(0, min(a[0], b[0])), max(0, min(a[1], b[1])), min(size, max(a[2], b[2])), min(size, max(a[3], b[3]))]
        if box[2] > box[0] and box[3] > box[1] and box not in boxes:
            boxes.append(box)
    if spec["kind"] == "pie" and change["kind"] == "values":  # the turning wedges: one box
        boxes = [[min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]]
    change["bboxes"] = boxes
    return img_a, img_b, {"spec": spec, "edited_spec": edited, "changes": [change]}
