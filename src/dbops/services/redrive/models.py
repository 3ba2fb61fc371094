"""Redrive constants, result models (the `-o json` shapes) and callback types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from dbops.services.redrive.journal import JournalPending, SettleReport

LEASE_SECONDS = 300  # visibility lease on scanned messages: far longer than a batch cycle
MIN_LEASE_SECONDS = 2
RECEIVE_WAIT_SECONDS = 1  # every receive is a long poll (all SQS servers are queried)
SETTLE_SECONDS = 20.0  # how long to keep polling while the DLQ still reports visible messages
SETTLE_POLL_SECONDS = 0.25  # pause between those polls when a receive does not wait
DEFAULT_MAX_MESSAGE_SIZE = 262144  # older queues; current default is 1 MiB
MAX_ATTRIBUTES = 10
REDRIVE_COUNT_ATTRIBUTE = "dbops-redrive-count"
COMPLETED_STATUSES = frozenset({"completed", "complete"})
FAILURES_KEPT = 500
RECENT_IDS_KEPT = 1000  # recent message ids, to spot SQS redeliveries (bounded memory)
SAMPLE_SIZE = 5
CONSECUTIVE_SEND_FAILURES_FATAL = 3
NATIVE_MAX_RATE = 500
NATIVE_DONE = frozenset({"COMPLETED", "CANCELLED", "FAILED"})
TRACE_HEADER = "AWSTraceHeader"  # the one message system attribute SQS lets a sender set

Method = Literal["copy", "native"]


# --------------------------------------------------------------------------- models
class RedriveFailure(BaseModel):
    """One message that was not moved (it stays in the DLQ unless stage is `delete`)."""

    message_id: str
    job_id: str | None = None
    stage: Literal["size", "send", "delete"]
    reason: str


class SampleRow(BaseModel):
    message_id: str
    job_id: str | None = None
    customer_id: str | None = None
    reason: str | None = None
    age_seconds: float | None = None
    size: int


class CallStats(BaseModel):
    """SQS calls made and messages per call (efficiency, for the benchmark and the log)."""

    receive_calls: int = 0
    received: int = 0
    send_calls: int = 0
    sent: int = 0
    delete_calls: int = 0
    deleted: int = 0
    visibility_calls: int = 0

    @property
    def per_receive(self) -> float:
        return self.received / self.receive_calls if self.receive_calls else 0.0

    @property
    def per_send(self) -> float:
        return self.sent / self.send_calls if self.send_calls else 0.0

    @property
    def per_delete(self) -> float:
        return self.deleted / self.delete_calls if self.delete_calls else 0.0


class CanaryReport(BaseModel):
    requested: int
    moved: int
    wait_seconds: int
    came_back: list[str] = Field(default_factory=list)  # message ids found back in the DLQ
    came_back_jobs: list[str] = Field(default_factory=list)
    passed: bool


class RedriveResult(BaseModel):
    """`dbops dlq redrive -o json`.

    Counts add up: every matching message is `moved`, `failed` (listed in `failures`; it
    stays in the DLQ unless its stage is `delete`) or `not_sent` (the run stopped before
    its turn: Ctrl-C while it waited for `--rate`, or a fatal error); it stays in the DLQ.
    `settled` says what this run first settled from an earlier run that did not finish
    (see `SettleReport`), `system_attributes_dropped` how many AWSTraceHeader values the
    target refused (those messages were sent without it).
    """

    method: Method
    dry_run: bool
    source: str
    target: str
    scanned: int = 0
    matched: int = 0
    moved: int = 0
    failed: int = 0
    released: int = 0
    skipped_completed: int = 0
    duplicates_possible: int = 0
    redelivered: int = 0  # copies SQS delivered again during the run (not sent twice)
    not_sent: int = 0  # matched, but the run stopped before sending them (still in the DLQ)
    system_attributes_dropped: int = 0
    settled: SettleReport | None = None
    not_found: list[str] = Field(default_factory=list)
    failures: list[RedriveFailure] = Field(default_factory=list)
    failures_truncated: bool = False
    sample: list[SampleRow] = Field(default_factory=list)
    stopped: str = "drained"
    remaining_visible: int | None = None
    interrupted: bool = False
    canary: CanaryReport | None = None
    task_handle: str | None = None
    task_status: str | None = None
    calls: CallStats = Field(default_factory=CallStats)
    duration_seconds: float = 0.0

    def counts(self) -> dict[str, Any]:
        """The action-log counts (also of a partial result: a failed run)."""
        return {
            "scanned": self.scanned,
            "matched": self.matched,
            "moved": self.moved,
            "failed": self.failed,
            "released": self.released,
            "skipped_completed": self.skipped_completed,
            "duplicates_possible": self.duplicates_possible,
            "not_sent": self.not_sent,
            "settled": self.settled.model_dump(exclude={"journal"}) if self.settled else None,
            "method": self.method,
            "stopped": self.stopped,
        }


class RedrivePreview(BaseModel):
    """What a redrive would do, shown before confirmation."""

    method: Method
    source: str
    target: str
    visible: int
    in_flight: int
    target_fifo: bool
    max_message_size: int
    filtered: bool
    scan: RedriveResult | None = None
    journal: JournalPending | None = None  # an earlier run to settle first


class MoveTask(BaseModel):
    """One row of `dbops dlq redrive-status`."""

    task_handle: str | None = None
    status: str
    source_arn: str | None = None
    destination_arn: str | None = None
    rate: int | None = None
    moved: int | None = None
    to_move: int | None = None
    failure_reason: str | None = None
    started_at: int | None = None


class CancelResult(BaseModel):
    task_handle: str
    moved_before_cancel: int
    dry_run: bool = False


@dataclass
class RedriveProgress:
    """Snapshot passed to the progress callback."""

    scanned: int
    matched: int
    moved: int
    failed: int
    total: int | None


ProgressFn = Callable[[RedriveProgress], None]
