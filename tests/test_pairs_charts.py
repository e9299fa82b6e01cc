"""Chart pairs: the spec differs in exactly the two swapped entries, and the plot shows it."""

from __future__ import annotations

import numpy as np
import pytest

from visionzero.pairs.charts import diff_paths, edit_spec, get_path, make_chart_pair, sample_spec
from visionzero.settings.schema import ChartSettings

SIZE = 160


@pytest.mark.parametrize("chart", ["bar", "line", "pie"])
@pytest.mark.parametrize("kind", ["values", "labels", "colors"])
def test_the_spec_differs_in_exactly_the_swapped_attributes(chart, kind):
    cfg = ChartSettings(kinds=[chart], edit_kinds=[kind])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        spec = sample_spec(rng, cfg)
        edited, change = edit_spec(spec, rng, cfg)
        assert change["kind"] == kind and spec["kind"] == chart
        assert diff_paths(spec, edited) == set(change["paths"])
        a, b = change["before"]
        assert a != b and change["after"] == [b, a]
        assert [get_path(edited, p) for p in change["paths"]] == [b, a]
        assert [get_path(spec, p) for p in change["paths"]] == [a, b]


def test_diff_paths_sees_every_kind_of_difference():
    base = {"labels": ["a", "b"], "series": [{"name": "s", "values": [1, 2]}], "title": "t"}
    assert diff_paths(base, base) == set()
    assert diff_paths(base, {**base, "title": "u"}) == {"title"}
    assert diff_paths(base, {**base, "labels": ["a"]}) == {"labels"}
    assert diff_paths(base, {**base, "series": [{"name": "s", "values": [1, 3]}]}) == {"series/0/values/1"}


@pytest.mark.parametrize("chart", ["bar", "line", "pie"])
@pytest.mark.parametrize("seed", [7, 11])
def test_pixels_change_where_the_change_log_says(chart, seed):
    cfg = ChartSettings(kinds=[chart])
    a, b, fields = make_chart_pair(np.random.default_rng(seed), cfg, SIZE)
    assert a.shape == b.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    change = fields["changes"][0]
    assert diff_paths(fields["spec"], fields["edited_spec"]) == set(change["paths"])
    diff = np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 0
    assert diff.any()
    inside = np.zeros_like(diff)
    for x0, y0, x1, y1 in change["bboxes"]:
        assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
        inside[y0:y1, x0:x1] = True
    # the recorded boxes hold (nearly) all changed pixels: moving one vertex of a line re-renders
    # the joins of the whole path, which flips a few anti-aliased pixels further along
    assert diff[inside].sum() >= 0.95 * diff.sum()


def test_same_seed_same_chart():
    cfg = ChartSettings()
    a1, b1, f1 = make_chart_pair(np.random.default_rng(5), cfg, SIZE)
    a2, b2, f2 = make_chart_pair(np.random.default_rng(5), cfg, SIZE)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and f1 == f2
