"""Output written to a full pipe survives the process being stopped and continued.

With PYTHONUNBUFFERED set (a common line in container images), sys.stdout writes straight
to the file descriptor. A write waiting on a full pipe that is interrupted (the process
stopped and continued: Ctrl-Z then `fg`, a debugger or profiler attaching) returns a short
count, and TextIOWrapper ignores it: the rest of the text was dropped, with exit status 0
(Python 3.11 on Linux). `dbops dlq export --out - | gzip > backup` was then a short
backup. Each case puts more than a pipe's worth of output in one write, stops the process
while that write waits on the full pipe, continues it, and only then reads everything.
The processes are real `python -m dbops` ones: the stream is built at interpreter start.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import QueuePair

pytestmark = pytest.mark.reliability

BODY_BYTES = 200_000  # more than a pipe holds (64 KiB) and than a write buffer (8 KiB)


def _state(pid: int) -> tuple[str, str]:
    """(process state letter, kernel function it waits in)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    wchan = Path(f"/proc/{pid}/wchan").read_text()
    return stat.rsplit(")", 1)[1].split()[0], wchan


def _wait_until(condition, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _start(args: list[str], *, unbuffered: bool) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "dbops", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _stop_and_continue_while_blocked_on_stdout(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    capacity = fcntl.fcntl(out, 1032)  # F_GETPIPE_SZ

    def pipe_full_and_writer_waiting() -> bool:
        assert proc.poll() is None, "dbops ended before it filled the pipe"
        unread = fcntl.ioctl(out, termios.FIONREAD, b"\0\0\0\0")
        return (
            int.from_bytes(unread, "little") >= capacity
            and "pipe_write" in _state(proc.pid)[1]  # anon_pipe_write on newer kernels
        )

    _wait_until(pipe_full_and_writer_waiting, "dbops to wait on a full stdout pipe")
    os.kill(proc.pid, signal.SIGSTOP)
    _wait_until(lambda: _state(proc.pid)[0] == "T", "dbops to stop")
    os.kill(proc.pid, signal.SIGCONT)


def _bodies(env: QueuePair, count: int) -> dict[str, str]:
    """Message id -> body, for `count` messages of BODY_BYTES each."""
    sent = {}
    for i in range(count):
        body = json.dumps({"job_id": f"big-{i}", "pad": chr(97 + i) * BODY_BYTES})
        reply = env.client.send_message(QueueUrl=env.dlq_url, MessageBody=body)
        sent[reply["MessageId"]] = body
    return sent


@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED", "buffered"])
def test_dlq_export_to_a_stopped_pipe_writes_every_line_whole(
    env: QueuePair, unbuffered: bool
) -> None:
    bodies = _bodies(env, 3)
    proc = _start(["dlq", "export", "--out", "-", "--reveal"], unbuffered=unbuffered)
    _stop_and_continue_while_blocked_on_stdout(proc)
    records = [json.loads(line) for line in _finish(proc).splitlines()]
    assert sorted(r["body"] for r in records) == sorted(bodies.values())


def test_json_output_to_a_stopped_pipe_is_whole(env: QueuePair) -> None:
    [(message_id, body)] = _bodies(env, 1).items()
    proc = _start(["dlq", "show", message_id, "--reveal", "-o", "json"], unbuffered=True)
    _stop_and_continue_while_blocked_on_stdout(proc)
    shown = json.loads(_finish(proc))
    assert json.dumps(shown["body"]) == body or shown["body"] == json.loads(body)
