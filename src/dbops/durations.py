"""Durations as operators type them: `90s`, `10m`, `2h`, `1d` (and combinations like `1h30m`)."""

from __future__ import annotations

import re

from dbops.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str, *, option: str = "duration", allow_zero: bool = False) -> int:
    """Seconds in `text`; a `UsageError` naming the bad value otherwise."""
    raw = (text or "").strip().lower()
    if not _WHOLE.fullmatch(raw):
        raise UsageError(
            f"invalid {option} {text!r}: use a number and a unit, e.g. 90s, 10m, 2h, 1d"
        )
    parts = _PART.findall(raw)
    # Ten years is 9 digits of seconds; longer numbers are refused before int(), which
    # raises ValueError past 4,300 digits.
    if any(len(n.lstrip("0")) > 12 for n, _ in parts):
        raise UsageError(f"invalid {option} {text!r}: longer than ten years")
    seconds = sum(int(n.lstrip("0") or "0") * _UNITS[u] for n, u in parts)
    if seconds == 0 and not allow_zero:
        raise UsageError(f"invalid {option} {text!r}: must be greater than zero")
    if seconds > 10 * 365 * 86400:
        raise UsageError(f"invalid {option} {text!r}: longer than ten years")
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = int(seconds)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            major, rest = divmod(seconds, size)
            minor_unit = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            minor = rest // minor_unit[1]
            return f"{major}{unit}{minor}{minor_unit[0]}" if minor else f"{major}{unit}"
    return f"{seconds}s"
