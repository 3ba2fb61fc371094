"""Test side of the one test seam (dbops.cli._checkpoint): run `dbops ...` in its own process
(forked from a warm interpreter: tests/forkserver.py) that pauses at a named point, wait
until it is there, then kill it or let it go on."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tests.forkserver import DbopsProcess


@dataclass
class Paused:
    proc: DbopsProcess
    marker: Path

    def wait(self, timeout: float = 120) -> int:
        """Block until the process reached its pause point; return its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.marker.exists():
                text = self.marker.read_text().split()
                if text:
                    return int(text[0])
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(
                    f"dbops exited ({self.proc.returncode}) before its pause point:\n"
                    f"{out.decode()}\n{err.decode()}"
                )
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"dbops did not reach its pause point in {timeout} s")

    def resume(self) -> None:
        self.marker.unlink(missing_ok=True)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()


def start_paused(
    args: list[str], point: str, folder: Path, *, nth: int = 1, **extra_env: str
) -> Paused:
    """Start `dbops ARGS` set to pause the `nth` time it reaches `point`."""
    marker = folder / f"paused-{point}-{nth}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "DBOPS_TEST_PAUSE_AT": f"{point}:{nth}",
        "DBOPS_TEST_PAUSE_MARKER": str(marker),
        **extra_env,
    }
    return Paused(DbopsProcess(args, env=env), marker)
