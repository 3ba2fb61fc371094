"""TEST-ONLY pause points for process-level crash tests (inert unless set).

`DBOPS_TEST_PAUSE_AT=<point>` (or `<point>:<n>` for the n-th time the point is reached)
with `DBOPS_TEST_PAUSE_MARKER=<file>`: the process writes `<pid> <point>` to the marker
file and blocks there for good, so that a reliability test can SIGKILL it at a known
point. Never set these variables in production.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_hits: dict[str, int] = {}


def pause(point: str) -> None:
    spec = os.environ.get("DBOPS_TEST_PAUSE_AT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    wanted = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    with _lock:
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] != wanted:
            return
    marker = os.environ.get("DBOPS_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {point}\n")
    while True:
        time.sleep(3600)
