"""DLQ redrive: move dead-lettered messages back to a work queue without ever losing one.

Two methods:

- ``copy`` (default): receive from the DLQ in batches of 10 under a long visibility lease,
  send the matching messages to the target (body and message attributes preserved, FIFO
  group id kept with a fresh deduplication id), then delete from the DLQ only the entries
  whose send succeeded. Messages that do not match (or could not be sent) stay invisible
  until the scan ends and are then released (visibility 0), so nothing is scanned twice
  and nothing is lost: a crash at any point leaves every message in the DLQ, the target,
  or both (a duplicate, never a loss).
- ``native``: AWS's StartMessageMoveTask, with progress from ListMessageMoveTasks.

Services never print: progress goes through a callback, test hooks through ``checkpoint``.

Modules: ``models`` (constants, result models), ``facts`` (queue facts, target, manifest,
``validate``), ``shaping`` (messages as sent to the target), ``rate`` (the token bucket),
``state`` / ``batch`` / ``copy`` (the copy engine: shared state and leases, send and
delete, workers and driver), ``canary``, ``native``, ``journal`` (what a killed run left
to settle), ``usecases`` (``copy_redrive``, ``preview``, and the command's
request -> plan -> ``execute``, or ``dry_run`` to render the plan's outcome without moving
anything). Every name is re-exported here.
"""

from __future__ import annotations

from dbops.ports import Checkpoint
from dbops.services.redrive.canary import canary_check, combine
from dbops.services.redrive.copy import _CopyRun, scan
from dbops.services.redrive.facts import (
    QueueFacts,
    completed_job_ids,
    queue_facts,
    read_manifest,
    resolve_target,
    validate,
)
from dbops.services.redrive.models import (
    COMPLETED_STATUSES,
    CONSECUTIVE_SEND_FAILURES_FATAL,
    DEFAULT_MAX_MESSAGE_SIZE,
    FAILURES_KEPT,
    LEASE_SECONDS,
    MAX_ATTRIBUTES,
    MIN_LEASE_SECONDS,
    NATIVE_DONE,
    NATIVE_MAX_RATE,
    RECEIVE_WAIT_SECONDS,
    RECENT_IDS_KEPT,
    REDRIVE_COUNT_ATTRIBUTE,
    SAMPLE_SIZE,
    SETTLE_SECONDS,
    TRACE_HEADER,
    CallStats,
    CanaryReport,
    CancelResult,
    Method,
    MoveTask,
    ProgressFn,
    RedriveFailure,
    RedrivePreview,
    RedriveProgress,
    RedriveResult,
    SampleRow,
)
from dbops.services.redrive.native import (
    cancel_move_task,
    cancel_plan,
    check_native,
    list_move_tasks,
    native_redrive,
    running_task,
    validate_native_rate,
)
from dbops.services.redrive.rate import TokenBucket
from dbops.services.redrive.shaping import (
    attribute_size,
    clean_attributes,
    message_size,
    outgoing,
    split_by_size,
    stamp_redrive_count,
)
from dbops.services.redrive.state import CopyOptions, Sink
from dbops.services.redrive.usecases import (
    RedrivePlan,
    RedriveRequest,
    copy_redrive,
    dry_run,
    execute,
    plan_redrive,
    preview,
)

__all__ = [
    "COMPLETED_STATUSES",
    "CONSECUTIVE_SEND_FAILURES_FATAL",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FAILURES_KEPT",
    "LEASE_SECONDS",
    "MAX_ATTRIBUTES",
    "MIN_LEASE_SECONDS",
    "NATIVE_DONE",
    "NATIVE_MAX_RATE",
    "RECEIVE_WAIT_SECONDS",
    "RECENT_IDS_KEPT",
    "REDRIVE_COUNT_ATTRIBUTE",
    "SAMPLE_SIZE",
    "SETTLE_SECONDS",
    "TRACE_HEADER",
    "CallStats",
    "CanaryReport",
    "CancelResult",
    "Checkpoint",
    "CopyOptions",
    "Method",
    "MoveTask",
    "ProgressFn",
    "QueueFacts",
    "RedriveFailure",
    "RedrivePlan",
    "RedrivePreview",
    "RedriveProgress",
    "RedriveRequest",
    "RedriveResult",
    "SampleRow",
    "Sink",
    "TokenBucket",
    "_CopyRun",
    "attribute_size",
    "canary_check",
    "cancel_move_task",
    "cancel_plan",
    "check_native",
    "clean_attributes",
    "combine",
    "completed_job_ids",
    "copy_redrive",
    "dry_run",
    "execute",
    "list_move_tasks",
    "message_size",
    "native_redrive",
    "outgoing",
    "plan_redrive",
    "preview",
    "queue_facts",
    "read_manifest",
    "resolve_target",
    "running_task",
    "scan",
    "split_by_size",
    "stamp_redrive_count",
    "validate",
    "validate_native_rate",
]
