"""`dlq purge` and `dlq delete`: previews, results and the use cases, on the snapshot
engine of `snapshot.py` (see its docstring for how nothing is lost)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from dbops.errors import RefusedError, RemoteError, UsageError, partial_result_on_failure
from dbops.names import queue_name
from dbops.ports import Checkpoint, Queues
from dbops.services.dlq.scan import Progress
from dbops.services.dlq.snapshot import (
    LEASE_SECONDS,
    WORKERS,
    Backup,
    Stopped,
    _left_in_place,
    _SnapshotRun,
    default_backup_path,  # noqa: F401  (the purge and delete commands use it from here)
    validate,
)
from dbops.services.messages import MessageFilter
from dbops.services.queue import read_counts

FAST_WARNING = (
    "--fast uses PurgeQueue: messages that arrive during the backup scan or during "
    "PurgeQueue's up-to-60-second window are deleted too, and they are NOT in the backup"
)


# --------------------------------------------------------------------------- purge
class PurgePreview(BaseModel):
    """`dbops dlq purge --dry-run -o json`, and what is shown before confirming.

    `snapshot` (visible + in flight) is the most a purge scans; `delayed` messages cannot
    be received yet and are left in place; `warning` says what `--fast` can lose.
    """

    queue: str
    visible: int
    in_flight: int
    delayed: int
    total: int
    snapshot: int
    fast: bool = False
    backup: str | None
    warning: str | None = None
    dry_run: bool = True


class PurgeResult(BaseModel):
    """`dbops dlq purge -o json`.

    Snapshot mode: `scanned` distinct messages were received (at most `snapshot`); each
    was written to the backup (`backed_up`, unless --no-backup) and then deleted
    (`purged`) or, if SQS refused its delete entry, released and listed in `failures`
    (`failed`), so `scanned == purged + failed` (and `== backed_up`). `left_in_place` is
    the queue's depth when done: messages that arrived meanwhile, messages a consumer held,
    delayed ones, and failed deletes. `stopped`: `snapshot` (scanned the snapshot),
    `drained` (the queue was empty earlier), `unsettled` (the queue reported messages no
    receive returned), `empty` (nothing to scan).
    Fast mode (`--fast`): `purged` is the queue's approximate depth just before PurgeQueue.
    """

    queue: str
    mode: Literal["snapshot", "fast"] = "snapshot"
    snapshot: int = 0
    scanned: int = 0
    backed_up: int | None = None
    purged: int = 0
    failed: int = 0
    failures: list[str] = Field(default_factory=list)
    released: int = 0
    duplicates: int = 0
    left_in_place: int | None = None
    stopped: Stopped = "empty"
    backup: str | None = None
    duration_seconds: float = 0.0
    dry_run: bool = False

    def counts(self) -> dict[str, int | None]:
        """The action-log counts (also of a partial result: a failed or interrupted run)."""
        return {
            "snapshot": self.snapshot,
            "scanned": self.scanned,
            "backed_up": self.backed_up,
            "purged": self.purged,
            "failed": self.failed,
            "left_in_place": self.left_in_place,
        }


def purge_preview(
    *, queues: Queues, queue_url: str, backup: Path | None, fast: bool = False
) -> PurgePreview:
    counts = read_counts(queues=queues, queue_url=queue_url)
    warning = FAST_WARNING if fast else None
    if not fast and counts.delayed:
        warning = f"{counts.delayed} delayed message(s) cannot be received yet: left in place"
    return PurgePreview(
        queue=queue_name(queue_url),
        visible=counts.visible,
        in_flight=counts.in_flight,
        delayed=counts.delayed,
        total=counts.total,
        snapshot=counts.visible + counts.in_flight,
        fast=fast,
        backup=str(backup) if backup else None,
        warning=warning,
    )


def purge(
    *,
    queues: Queues,
    queue_url: str,
    backup: Path | None,
    snapshot: int | None = None,
    fast: bool = False,
    lease: int = LEASE_SECONDS,
    workers: int = WORKERS,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> PurgeResult:
    """Remove every message the queue held at the start (`snapshot`, default: its depth
    now), after backing each one up (unless `backup` is None). See the module docstring.

    A failure or an interruption (`Interrupted`, exit 130) carries the counts so far as
    `partial_result` (a PurgeResult).
    """
    validate(lease=lease, workers=workers)
    started = time.monotonic()
    if snapshot is None:
        now = read_counts(queues=queues, queue_url=queue_url)
        snapshot = now.visible + now.in_flight
    if fast:
        return _fast_purge(
            queues=queues,
            queue_url=queue_url,
            backup=backup,
            snapshot=snapshot,
            lease=lease,
            workers=workers,
            progress=progress,
            started=started,
            checkpoint=checkpoint,
        )
    file = Backup.create(backup) if backup is not None else None
    run = _SnapshotRun(
        queues,
        queue_url,
        bound=snapshot,
        backup=file,
        lease=lease,
        workers=workers,
        progress=progress,
        checkpoint=checkpoint,
    )

    def result(left_in_place: int | None = None) -> PurgeResult:
        return PurgeResult(
            queue=run.name,
            snapshot=run.bound,
            scanned=run.scanned,
            backed_up=file.lines if file is not None else None,
            purged=run.deleted,
            failed=run.failed,
            failures=run.failures,
            released=run.released,
            duplicates=run.duplicates,
            left_in_place=left_in_place,
            stopped=run.stopped,
            backup=str(backup) if backup is not None else None,
            duration_seconds=round(time.monotonic() - started, 3),
        )

    with partial_result_on_failure(result), run:
        run.scan()
        if checkpoint:
            checkpoint("after_backup")
        run.delete()
        run.release()
    return result(_left_in_place(queues, queue_url))


def _fast_purge(
    *,
    queues: Queues,
    queue_url: str,
    backup: Path | None,
    snapshot: int,
    lease: int,
    workers: int,
    progress: Progress | None,
    started: float,
    checkpoint: Checkpoint | None = None,
) -> PurgeResult:
    """Backup scan (held, then released), then PurgeQueue. Refuses (exit 6) when the queue
    holds more than the backup got (in flight with a consumer, or delayed)."""
    name = queue_name(queue_url)
    file = Backup.create(backup) if backup is not None else None
    purged = 0

    def result() -> PurgeResult:
        return PurgeResult(
            queue=name,
            mode="fast",
            snapshot=snapshot,
            scanned=file.lines if file is not None else 0,
            backed_up=file.lines if file is not None else None,
            purged=purged,
            stopped="snapshot",
            backup=str(backup) if backup is not None else None,
            duration_seconds=round(time.monotonic() - started, 3),
        )

    with partial_result_on_failure(result):
        if file is not None:
            with _SnapshotRun(
                queues,
                queue_url,
                bound=snapshot,
                backup=file,
                lease=lease,
                workers=workers,
                progress=progress,
                checkpoint=checkpoint,
            ) as run:
                run.scan()
                run.release(everything=True)
            now = read_counts(queues=queues, queue_url=queue_url)
            if now.total > file.lines:
                raise RefusedError(
                    f"not purging {name}: the backup {backup} holds {file.lines} message(s) but "
                    f"the queue holds {now.total} ({now.in_flight} in flight, {now.delayed} "
                    "delayed)",
                    hint="drop --fast (a snapshot purge removes exactly what it backed up), or "
                    "wait for in-flight messages to return and re-run",
                )
            if checkpoint:
                checkpoint("after_backup")
        before = read_counts(queues=queues, queue_url=queue_url).total
        try:
            queues.purge(queue_url)
        except RemoteError as exc:
            if "PurgeQueueInProgress" in exc.message:
                raise RemoteError(
                    f"a purge of {name} is already in progress (SQS allows one PurgeQueue per "
                    "queue every 60 seconds)",
                    hint="wait 60 s and re-run"
                    + (f"; the backup is in {backup}" if backup is not None else ""),
                ) from None
            raise
        purged = before
    return result()


# --------------------------------------------------------------------------- delete
class DeletePreview(BaseModel):
    """`dbops dlq delete --dry-run -o json`: a peek scan of the snapshot, nothing deleted."""

    queue: str
    snapshot: int
    scanned: int
    matched: int
    drained: bool
    released: int
    dry_run: bool = True


class DeleteResult(BaseModel):
    """`dbops dlq delete -o json`.

    Of `scanned` messages (at most `snapshot`), `matched` were written to the backup and
    then `deleted`, or released and listed in `failures` (`failed`): `matched == deleted +
    failed`. The others were released untouched (`released` counts every release).
    """

    queue: str
    snapshot: int = 0
    scanned: int
    matched: int
    deleted: int
    failed: int
    failures: list[str] = Field(default_factory=list)
    released: int
    backup: str | None = None
    backed_up: int | None = None
    drained: bool
    stopped: Stopped = "snapshot"
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """The action-log counts (also of a partial result: a failed or interrupted run)."""
        return {
            "snapshot": self.snapshot,
            "scanned": self.scanned,
            "matched": self.matched,
            "deleted": self.deleted,
            "failed": self.failed,
        }


def _require_filter(message_filter: MessageFilter) -> None:
    if message_filter.is_empty:
        raise UsageError(
            "dlq delete needs a filter or --manifest",
            hint="to delete every message use `dbops dlq purge` (it writes a backup first)",
        )
    if message_filter.message_ids is not None and not message_filter.message_ids:
        raise UsageError("the manifest lists no message ids")


def _snapshot(queues: Queues, queue_url: str, snapshot: int | None) -> int:
    if snapshot is not None:
        return snapshot
    counts = read_counts(queues=queues, queue_url=queue_url)
    return counts.visible + counts.in_flight


def delete_preview(
    *,
    queues: Queues,
    queue_url: str,
    message_filter: MessageFilter,
    lease: int = LEASE_SECONDS,
    progress: Progress | None = None,
) -> DeletePreview:
    """Count the messages `delete_messages` would delete (a peek of the snapshot)."""
    _require_filter(message_filter)
    validate(lease=lease)
    bound = _snapshot(queues, queue_url, None)
    ids = message_filter.message_ids
    with _SnapshotRun(
        queues,
        queue_url,
        bound=bound,
        accept=message_filter.accepts,
        manifest=set(ids) if ids is not None else None,
        lease=lease,
        progress=progress,
    ) as run:
        run.scan()
        run.release(everything=True)
    return DeletePreview(
        queue=queue_name(queue_url),
        snapshot=bound,
        scanned=run.scanned,
        matched=run.matched,
        drained=run.stopped == "drained",
        released=run.released,
    )


def delete_messages(
    *,
    queues: Queues,
    queue_url: str,
    message_filter: MessageFilter,
    backup: Path | None,
    snapshot: int | None = None,
    lease: int = LEASE_SECONDS,
    workers: int = WORKERS,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> DeleteResult:
    """Delete exactly the matching messages of the snapshot (by the receipt handles of the
    backup scan); the rest are released untouched. See the module docstring. A failure or
    an interruption (`Interrupted`) carries the counts so far as `partial_result`."""
    _require_filter(message_filter)
    validate(lease=lease, workers=workers)
    bound = _snapshot(queues, queue_url, snapshot)
    file = Backup.create(backup) if backup is not None else None
    ids = message_filter.message_ids
    run = _SnapshotRun(
        queues,
        queue_url,
        bound=bound,
        accept=message_filter.accepts,
        backup=file,
        manifest=set(ids) if ids is not None else None,
        lease=lease,
        workers=workers,
        progress=progress,
        checkpoint=checkpoint,
    )

    def result() -> DeleteResult:
        return DeleteResult(
            queue=run.name,
            snapshot=bound,
            scanned=run.scanned,
            matched=run.matched,
            deleted=run.deleted,
            failed=run.failed,
            failures=run.failures,
            released=run.released,
            backup=str(backup) if backup is not None else None,
            backed_up=file.lines if file is not None else None,
            drained=run.stopped == "drained",
            stopped=run.stopped,
        )

    with partial_result_on_failure(result), run:
        run.scan()
        if checkpoint:
            checkpoint("after_backup")
        run.delete()
        run.release()
    return result()
