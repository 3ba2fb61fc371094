"""Test helpers: one `invoke()` around CliRunner, plus small utilities."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dbops.cli.main import app


@dataclass
class Invocation:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def jsonl(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def invoke(args: list[str], code: int | None = 0, input: str | None = None) -> Invocation:
    """Run `dbops ARGS` in-process; assert the exit code (unless code is None)."""
    runner = CliRunner()
    result = runner.invoke(app, args, input=input, catch_exceptions=True, prog_name="dbops")
    stderr = result.stderr if result.stderr_bytes is not None else ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"dbops {' '.join(args)} raised:\n{tb}\nstderr:\n{stderr}")
    outcome = Invocation(result.exit_code, result.stdout, stderr)
    if code is not None:
        assert result.exit_code == code, (
            f"dbops {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{stderr}"
        )
    return outcome


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line_error(stderr: str) -> str:
    """Assert stderr is a single `Error: ...` line with no traceback; return it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def retry_after_bounds(db: Any, reset_at: datetime, *, hit_after: datetime) -> tuple[int, int]:
    """The Retry-After (whole seconds, at least 1) a rate-limit denial freeing at `reset_at`
    may carry, when the hit read the database clock after `hit_after` and before this call.

    Measured on the database's own clock rather than assumed: on a busy CI machine the calls
    between the arranged rows and the hit can take seconds.
    """
    now = db.execute("select clock_timestamp() as t").fetchone()["t"]

    def whole_seconds_from(moment: datetime) -> int:
        return max(1, math.ceil((reset_at - moment).total_seconds()))

    return whole_seconds_from(now), whole_seconds_from(hit_after)


def require_purge_in_progress_rule(client: Any) -> None:
    """Skip unless the SQS endpoint enforces AWS's one-purge-per-60-s rule.

    moto and AWS answer a second PurgeQueue within 60 s with PurgeQueueInProgress;
    LocalStack purges again. Probed on a scratch queue, never on the test's own queues.
    """
    import uuid

    import pytest
    from botocore.exceptions import ClientError

    url = client.create_queue(QueueName=f"purge-probe-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    try:
        client.purge_queue(QueueUrl=url)
        try:
            client.purge_queue(QueueUrl=url)
        except ClientError as exc:
            if "PurgeQueueInProgress" in str(exc):
                return
            raise
        pytest.skip("this SQS endpoint does not enforce PurgeQueueInProgress (LocalStack)")
    finally:
        client.delete_queue(QueueUrl=url)


# Every test database is a directory of about a thousand files, created and deleted within
# seconds. On ext4 (the usual disk) creating a file then scans the inode table for recently
# deleted inodes, which made file creation most of PostgreSQL's CPU time in this suite
# (measured with perf: 42 % of it in open(), in ext4's recently_deleted). In memory (tmpfs)
# a file costs next to nothing, so test clusters live there when there is room.
PGDATA_MIN_FREE = 4 << 30


def pgdata_parent() -> str | None:
    """The folder for a test PostgreSQL cluster's data (the session's, and the sandboxes some
    tests start), for `tempfile.mkdtemp(dir=...)`: /dev/shm when it is writable with room
    (Docker gives it 64 MB by default: too small), else None (the usual temporary folder)."""
    shm = Path("/dev/shm")
    try:
        if (
            shm.is_dir()
            and os.access(shm, os.W_OK)
            and shutil.disk_usage(shm).free >= PGDATA_MIN_FREE
        ):
            return str(shm)
    except OSError:
        pass
    return None
