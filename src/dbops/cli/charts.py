"""Tiny text charts for table output (never for json/csv): pure functions, no imports."""

from __future__ import annotations

import math
from collections.abc import Sequence

SPARK = "▁▂▃▄▅▆▇█"
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, max: float, width: int) -> str:
    """A horizontal bar of `width` cells for `value` out of `max` (eighth-cell steps).

    Values below 0 draw nothing, above `max` a full bar; a positive value never rounds
    down to an empty bar. Always exactly `width` characters (padded with spaces).
    """
    if width <= 0:
        return ""
    if max <= 0 or value <= 0:
        return " " * width
    eighths = round(min(value, max) / max * width * 8)
    eighths = min(width * 8, eighths if eighths > 0 else 1)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled from the smallest to the largest value.

    The mapping is monotone (a larger value never gets a lower block); equal values get the
    same block, and a flat series is drawn at the bottom. None or a non-finite value is a
    space: a gap in the line.
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    scale = 1.0 if math.isfinite(high - low) else 0.5  # huge ranges: halve to avoid inf
    low, span = low * scale, high * scale - low * scale
    top = len(SPARK) - 1
    chars = []
    for v in values:
        if v is None or not math.isfinite(v):
            chars.append(" ")
        elif span <= 0:
            chars.append(SPARK[0])
        else:
            chars.append(SPARK[min(top, int((v * scale - low) / span * top + 0.5))])
    return "".join(chars)
