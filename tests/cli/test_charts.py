"""The terminal chart helpers (cli/charts.py): sized, monotone, pure."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from dbops.cli.charts import bar, sparkline

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(value=values, maximum=values, width=st.integers(min_value=0, max_value=60))
def test_bar_is_always_exactly_width_cells(value: float, maximum: float, width: int) -> None:
    assert len(bar(value, maximum, width)) == width


@given(a=values, b=values, maximum=st.floats(min_value=1, max_value=1e6))
def test_a_larger_value_never_draws_a_shorter_bar(a: float, b: float, maximum: float) -> None:
    low, high = sorted([a, b])
    assert len(bar(low, maximum, 20).rstrip()) <= len(bar(high, maximum, 20).rstrip())


@given(st.lists(st.one_of(st.none(), values), max_size=40))
def test_sparkline_has_one_character_per_value(samples: list[float | None]) -> None:
    line = sparkline(samples)
    assert len(line) == len(samples)
    assert all((ch == " ") == (v is None) for ch, v in zip(line, samples, strict=True))


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=2, max_size=40))
def test_sparkline_is_monotone(samples: list[float]) -> None:
    order = "▁▂▃▄▅▆▇█"
    line = sparkline(samples)
    pairs = list(zip(samples, line, strict=True))
    for (v1, c1), (v2, c2) in itertools.pairwise(pairs):
        if v1 <= v2:
            assert order.index(c1) <= order.index(c2)


def test_sparkline_examples() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([19, 140]) == "▁█"
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([1, float("nan"), 3]) == "▁ █"
    assert sparkline([40, 70, 100]) == "▁▅█"
