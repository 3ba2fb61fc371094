"""Tiny text charts for table output (never for json/csv): pure functions, no imports."""

from __future__ import annotations

from collections.abc import Sequence

_BLOCKS = "▁▂▃▄▅▆▇█"
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
    """One block character per value, scaled from 0 (or the minimum, if negative) to the
    maximum; None is drawn as a space. Empty input gives an empty string."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    low = min(0.0, min(present))
    high = max(present)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(_BLOCKS[0])
        else:
            out.append(
                _BLOCKS[min(len(_BLOCKS) - 1, int((v - low) / span * (len(_BLOCKS) - 1) + 0.5))]
            )
    return "".join(out)
