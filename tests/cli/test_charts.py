"""Pure chart helpers (dbops.cli.charts): bars and sparklines."""

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from dbops.cli.charts import SPARK, bar, sparkline

finite = st.floats(allow_nan=False, allow_infinity=False)


def test_sparkline_examples():
    assert sparkline([]) == ""
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == SPARK
    assert sparkline([19, 140]) == "▁█"
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([1, math.nan, 3]) == "▁ █"


def test_bar_examples():
    assert bar(10, 10, 4) == "████"
    assert bar(5, 10, 4) == "██"
    assert bar(1, 16, 2) == "▏"
    assert bar(0, 10, 4) == "" and bar(3, 0, 4) == "" and bar(3, 10, 0) == ""
    assert bar(50, 10, 3) == "███"  # above the maximum: full
    assert bar(math.nan, 10, 3) == "" and bar(3, math.inf, 3) == ""


@given(st.lists(finite, max_size=60))
def test_sparkline_has_one_block_per_value(values):
    line = sparkline(values)
    assert len(line) == len(values)
    assert set(line) <= set(SPARK)


@given(st.lists(finite, min_size=1, max_size=60))
def test_sparkline_mapping_is_monotone(values):
    line = sparkline(values)
    level = {c: i for i, c in enumerate(SPARK)}
    pairs = sorted(zip(values, (level[c] for c in line), strict=True))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(pairs))
    assert level[line[values.index(min(values))]] == 0
    if max(values) > min(values) and math.isfinite(max(values) - min(values)):
        assert line[values.index(max(values))] == SPARK[-1]


@given(finite, finite, st.floats(min_value=0.001, max_value=1e9), st.integers(1, 80))
def test_bar_is_monotone_and_within_width(a, b, maximum, width):
    low, high = sorted((a, b))
    assert len(bar(low, maximum, width)) <= len(bar(high, maximum, width)) <= width
    assert _eighths(bar(low, maximum, width)) <= _eighths(bar(high, maximum, width))


def _eighths(text: str) -> int:
    partial = " ▏▎▍▌▋▊▉"
    return sum(8 if c == "█" else partial.index(c) for c in text)
