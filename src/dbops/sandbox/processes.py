"""Processes the sandbox starts: liveness, bounded waits, termination, free ports.

moto processes started by this Python process are kept in `_CHILDREN` so they can be
reaped (no zombies, no "still running" ResourceWarning) when `down` runs in the same
process (tests).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.1

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def pid_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid:
        return False
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with pgserver
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        import psutil

        return list(psutil.Process(pid).cmdline())
    except Exception:
        return []


def _wait_gone(pid: int, timeout: float) -> bool:
    child = _CHILDREN.get(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            _CHILDREN.pop(pid, None)
            return True
        if child is None and not pid_alive(pid):
            return True
        time.sleep(POLL_INTERVAL)
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _terminate(pid: int) -> bool:
    """SIGTERM, bounded wait, then SIGKILL. True when the process is gone."""
    child = _CHILDREN.get(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, STOP_TIMEOUT / 3):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_TIMEOUT / 3)
    return _wait_gone(pid, STOP_TIMEOUT / 3)
