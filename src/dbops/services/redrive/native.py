"""The native method: AWS's StartMessageMoveTask, followed with ListMessageMoveTasks
(the whole DLQ to its source queue; no filters), and cancelling a running task."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from dbops.errors import DbopsError, NotFoundError, RemoteError, UsageError
from dbops.names import queue_name
from dbops.ports import Queues
from dbops.services.redrive.facts import queue_facts
from dbops.services.redrive.models import (
    NATIVE_DONE,
    NATIVE_MAX_RATE,
    CancelResult,
    MoveTask,
    ProgressFn,
    RedriveFailure,
    RedriveProgress,
    RedriveResult,
)

_UNSUPPORTED_MARKERS = (
    "NotImplemented",
    "not implemented",
    "InvalidAction",
    "UnknownOperation",
    "UnsupportedOperation",
    "<html",
    "<!doctype",
)


def _is_unsupported(exc: RemoteError) -> bool:
    text = exc.message
    if any(marker.lower() in text.lower() for marker in _UNSUPPORTED_MARKERS):
        return True
    parts = [p.strip() for p in text.split(":")]
    return len(parts) > 1 and parts[1] in {"500", "501", "404"}


def _native_call(queues: Queues, api: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RemoteError as exc:
        if _is_unsupported(exc):
            where = queues.endpoint or "this SQS endpoint"
            raise RemoteError(
                f"{where} does not implement {api} (message move tasks)",
                hint="use --method copy, the default",
            ) from None
        raise


def _task(item: Mapping[str, Any]) -> MoveTask:
    return MoveTask(
        task_handle=item.get("TaskHandle"),
        status=str(item.get("Status", "UNKNOWN")),
        source_arn=item.get("SourceArn"),
        destination_arn=item.get("DestinationArn"),
        rate=item.get("MaxNumberOfMessagesPerSecond"),
        moved=item.get("ApproximateNumberOfMessagesMoved"),
        to_move=item.get("ApproximateNumberOfMessagesToMove"),
        failure_reason=item.get("FailureReason"),
        started_at=item.get("StartedTimestamp"),
    )


def _arn(queues: Queues, url: str) -> str:
    arn = queue_facts(queues, url).arn
    if not arn:
        raise RemoteError(f"queue {queue_name(url)} has no QueueArn attribute")
    return arn


def list_move_tasks(*, queues: Queues, dlq_url: str) -> list[MoveTask]:
    source_arn = _arn(queues, dlq_url)
    items = _native_call(queues, "ListMessageMoveTasks", lambda: queues.list_move_tasks(source_arn))
    return [_task(i) for i in items]


def running_task(*, queues: Queues, dlq_url: str) -> MoveTask:
    """The DLQ's running move task (the newest one), or not found (exit 4)."""
    for task in list_move_tasks(queues=queues, dlq_url=dlq_url):
        if task.status == "RUNNING" and task.task_handle:
            return task
    raise NotFoundError(f"no running message move task on {queue_name(dlq_url)}")


def cancel_plan(*, queues: Queues, dlq_url: str, task_handle: str | None) -> CancelResult:
    """What `cancel_move_task` would cancel (`dry_run` set): `task_handle`, or the DLQ's
    running move task when none is given (exit 4 when there is none)."""
    handle = task_handle or running_task(queues=queues, dlq_url=dlq_url).task_handle or ""
    return CancelResult(task_handle=handle, moved_before_cancel=0, dry_run=True)


def cancel_move_task(*, queues: Queues, dlq_url: str, task_handle: str | None) -> CancelResult:
    """Cancel `task_handle`, or the DLQ's running move task when none is given."""
    handle = task_handle or running_task(queues=queues, dlq_url=dlq_url).task_handle or ""
    moved = _native_call(queues, "CancelMessageMoveTask", lambda: queues.cancel_move_task(handle))
    return CancelResult(task_handle=handle, moved_before_cancel=int(moved))


def check_native(*, queues: Queues, dlq_url: str) -> None:
    """Fail early (exit 5) when the endpoint has no message move tasks."""
    list_move_tasks(queues=queues, dlq_url=dlq_url)


def validate_native_rate(rate: float | None) -> int | None:
    """`--rate` as MaxNumberOfMessagesPerSecond: a whole number from 1 to 500."""
    if rate is None:
        return None
    if rate != int(rate) or not 1 <= rate <= NATIVE_MAX_RATE:
        raise UsageError(
            f"invalid --rate {rate:g} for --method native: use a whole number 1-{NATIVE_MAX_RATE}"
        )
    return int(rate)


def native_redrive(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    rate: float | None = None,
    progress: ProgressFn | None = None,
    poll_seconds: float = 2.0,
    stop_event: threading.Event | None = None,
    timeout_seconds: float | None = None,
) -> RedriveResult:
    """StartMessageMoveTask, then follow ListMessageMoveTasks until the task ends."""
    native_rate = validate_native_rate(rate)
    started = time.monotonic()
    source = queue_facts(queues, dlq_url)
    source_arn = source.arn or _arn(queues, dlq_url)
    target_arn = _arn(queues, target_url)
    check_native(queues=queues, dlq_url=dlq_url)
    result = RedriveResult(method="native", dry_run=False, source=dlq_url, target=target_url)
    result.scanned = source.visible
    result.matched = source.visible
    handle = _native_call(
        queues,
        "StartMessageMoveTask",
        lambda: queues.start_move_task(source_arn, target_arn, native_rate),
    )
    result.task_handle = handle
    stop = stop_event or threading.Event()
    task: MoveTask | None = None
    try:
        while True:
            tasks = list_move_tasks(queues=queues, dlq_url=dlq_url)
            mine = [t for t in tasks if t.task_handle == handle]
            task = mine[0] if mine else (tasks[0] if tasks else None)
            if task is not None:
                if task.to_move is not None:
                    result.matched = task.to_move
                result.moved = task.moved or 0
                if progress is not None:
                    progress(
                        RedriveProgress(
                            result.moved, result.matched, result.moved, 0, result.matched
                        )
                    )
                if task.status in NATIVE_DONE:
                    break
            if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
                result.stopped = "timeout"
                break
            if stop.wait(poll_seconds):
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        try:
            moved = _native_call(
                queues, "CancelMessageMoveTask", lambda: queues.cancel_move_task(handle)
            )
            result.moved = max(result.moved, int(moved))
            result.task_status = "CANCELLED"
        except DbopsError:
            result.task_status = "RUNNING"
        result.interrupted = True
        result.stopped = "interrupted"
        result.duration_seconds = round(time.monotonic() - started, 3)
        return result
    _ended(result, task)
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result


def _ended(result: RedriveResult, task: MoveTask | None) -> None:
    """The result's status from the task's last state."""
    if task is None:
        return
    result.task_status = task.status
    if task.status == "FAILED":
        result.failed = max(0, result.matched - result.moved)
        result.failures.append(
            RedriveFailure(
                message_id="*", stage="send", reason=task.failure_reason or "move task failed"
            )
        )
        result.stopped = "failed"
    elif task.status == "CANCELLED":
        result.stopped = "cancelled"
    elif result.stopped != "timeout":
        result.stopped = "drained"
