"""The rate-limit presets in use (architecture.md section 3): requests per window in seconds.

One table for every feature that names them: `dbops demo` compares offenders with their
limits, `dbops audit` (check `ratelimit.rules`) wants an enabled rule for each.
"""

from __future__ import annotations

RATE_LIMIT_PRESETS: dict[str, tuple[int, int]] = {
    "auth": (5, 900),
    "staff": (30, 60),
    "public": (100, 60),
    "admin": (10, 60),
}
