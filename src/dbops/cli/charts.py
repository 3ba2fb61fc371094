"""Tiny text charts for table output (never json/csv): bars and sparklines.

Pure functions on numbers, built from Unicode block characters; no Rich import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SPARK = "▁▂▃▄▅▆▇█"
_PARTIAL = " ▏▎▍▌▋▊▉"  # 0/8 .. 7/8 of a cell
_FULL = "█"


def bar(value: float, maximum: float, width: int) -> str:
    """A horizontal bar of at most `width` cells for `value` out of `maximum`.

    Eighth-cell resolution; empty for a zero, negative or non-finite value or maximum;
    values above `maximum` are drawn full. No padding: the caller aligns the column.
    """
    if width <= 0 or not (math.isfinite(value) and math.isfinite(maximum)):
        return ""
    if value <= 0 or maximum <= 0:
        return ""
    eighths = round(min(value / maximum, 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    return _FULL * full + (_PARTIAL[rest] if rest else "")


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled from the smallest to the largest value.

    The mapping is monotone (a larger value never gets a lower block); equal values get
    the same block, and a flat series is drawn at the bottom. A non-finite value (NaN,
    infinity) is a space: a gap in the line.
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    scale = 1.0 if math.isfinite(high - low) else 0.5  # huge ranges: halve to avoid inf
    low, span = low * scale, high * scale - low * scale
    top = len(SPARK) - 1
    chars = []
    for v in values:
        if not math.isfinite(v):
            chars.append(" ")
        elif span <= 0:
            chars.append(SPARK[0])
        else:
            chars.append(SPARK[min(top, int((v * scale - low) / span * top + 0.5))])
    return "".join(chars)
