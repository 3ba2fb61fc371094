"""dbops.cli.charts: pure functions, checked cell by cell."""

from __future__ import annotations

from dbops.cli.charts import bar, sparkline


def test_bar_scales_in_eighths_of_a_cell():
    assert bar(10, 10, 4) == "████"
    assert bar(5, 10, 4) == "██"
    assert bar(1, 16, 2) == "▏"  # 1/16 of 2 cells = one eighth
    assert bar(3, 8, 1) == "▍"
    assert bar(20, 10, 3) == "███"  # over the maximum: full, never longer


def test_bar_edges():
    assert bar(0, 10, 5) == "" and bar(-1, 10, 5) == ""
    assert bar(5, 0, 5) == "" and bar(5, 10, 0) == ""
    assert bar(1, 1_000_000, 5) == "▏"  # a positive value is always visible


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([5, None, 10]) == "▅ █"
    assert sparkline([]) == "" and sparkline([None, None]) == "  "
    assert len(sparkline(list(range(100)))) == 100
