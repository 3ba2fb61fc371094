"""The one test seam: pause a running command at a named point (inert unless set).

Services that a reliability test must stop mid-way take a `checkpoint` callback
(`dbops.ports.Checkpoint`) and call it at named points; the CLI passes the one built
here. Protocol (environment, read here only):

- `DBOPS_TEST_PAUSE_AT=<point>[:<n>]`: pause the n-th time (default 1) `<point>` is
  reached;
- `DBOPS_TEST_PAUSE_MARKER=<file>`: when pausing, the process writes `<pid> <point>:<n>`
  to that file (atomically: the test never reads half of it) and blocks until the file is
  deleted (resume) or the process is killed.

`tests/pause.py` is the matching helper on the test side. Never set these in production.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from dbops.ports import Checkpoint


def checkpoint_from_env() -> Checkpoint | None:
    spec = os.environ.get("DBOPS_TEST_PAUSE_AT", "")
    marker = os.environ.get("DBOPS_TEST_PAUSE_MARKER", "")
    point, _, nth = spec.partition(":")
    if not point or not marker:
        return None
    target = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    lock = threading.Lock()
    seen = {"n": 0}

    def checkpoint(name: str) -> None:
        if name != point:
            return
        with lock:
            seen["n"] += 1
            if seen["n"] != target:
                return
        path = Path(marker)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(f"{os.getpid()} {name}:{target}\n")
        os.replace(temporary, path)
        while path.exists():
            time.sleep(0.02)

    return checkpoint
