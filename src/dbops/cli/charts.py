"""Tiny terminal charts for table output (never used in json/csv): pure functions, no Rich."""

from __future__ import annotations

from collections.abc import Sequence

_BLOCKS = " ▏▎▍▌▋▊▉█"  # 0/8 .. 8/8 of a cell
_SPARKS = "▁▂▃▄▅▆▇█"


def bar(value: float, max: float, width: int = 20) -> str:
    """A horizontal bar `width` cells long at `max`, with eighth-cell precision.

    Non-positive values and a non-positive `max` or `width` give an empty string; values
    above `max` draw a full bar; a positive value never rounds to nothing (at least one
    eighth of a cell is drawn). No padding: the caller aligns the column."""
    if width <= 0 or max <= 0 or value <= 0:
        return ""
    eighths = round(min(value, max) / max * width * 8)
    eighths = eighths if eighths > 0 else 1
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, scaled from 0 (or the minimum, if negative) to the maximum;
    None is a space, a flat series of zeros the lowest block."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    low = min(0.0, min(present))
    span = max(present) - low
    top = len(_SPARKS) - 1
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(_SPARKS[0])
        else:
            out.append(_SPARKS[min(top, round((v - low) / span * top))])
    return "".join(out)
