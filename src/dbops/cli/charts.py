"""Tiny terminal charts for table output (never used in json/csv): pure functions, no Rich."""

from __future__ import annotations

from collections.abc import Sequence

_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"


def bar(value: float, max: float, width: int = 20) -> str:
    """A horizontal bar `width` cells long at `max`, with eighth-cell precision.

    Non-positive values and a non-positive `max` or `width` give an empty string; a positive
    value never rounds to nothing (at least one eighth of a cell is drawn)."""
    if width <= 0 or max <= 0 or value <= 0:
        return ""
    eighths = round(min(value, max) / max * width * 8)
    eighths = eighths if eighths > 0 else 1
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, scaled between the smallest and largest; None is a space."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif span == 0:
            out.append(_SPARKS[0] if high == 0 else _SPARKS[len(_SPARKS) // 2])
        else:
            out.append(_SPARKS[round((v - low) / span * (len(_SPARKS) - 1))])
    return "".join(out)
