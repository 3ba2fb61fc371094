"""Queue inspection: list, info, depth, and the rate arithmetic behind `queue watch`.

Everything here reads SQS attributes through the `Queues` port. `RateTracker` is pure: it
turns successive count samples (with the times they were taken) into in/out/drain rates
and a time-to-empty estimate; the CLI owns the clock and the waiting between samples.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from dbops.errors import DbopsError
from dbops.names import queue_name
from dbops.ports import Queues


def _int(attrs: dict[str, str], key: str) -> int:
    value = attrs.get(key)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _opt_int(attrs: dict[str, str], key: str) -> int | None:
    value = attrs.get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _timestamp(attrs: dict[str, str], key: str) -> datetime | None:
    """Epoch seconds (AWS sends integers; some SQS implementations fractions)."""
    try:
        return datetime.fromtimestamp(float(attrs[key]), tz=UTC) if key in attrs else None
    except (ValueError, OverflowError, OSError):
        return None


class QueueCounts(BaseModel):
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def counts_from_attributes(attrs: dict[str, str]) -> QueueCounts:
    return QueueCounts(
        visible=_int(attrs, "ApproximateNumberOfMessages"),
        in_flight=_int(attrs, "ApproximateNumberOfMessagesNotVisible"),
        delayed=_int(attrs, "ApproximateNumberOfMessagesDelayed"),
    )


def read_counts(*, queues: Queues, queue_url: str) -> QueueCounts:
    return counts_from_attributes(queues.get_attributes(queue_url))


# --------------------------------------------------------------------------- oldest age
OldestAgeSource = Literal["cloudwatch", "sample"]
SAMPLE_WAIT_SECONDS = 1


class OldestAge(BaseModel):
    """The age of a queue's oldest message and where the figure comes from.

    `source` is `cloudwatch` (ApproximateAgeOfOldestMessage, the latest point of the last
    5 minutes), `sample` (the oldest SentTimestamp among up to 10 messages peeked with
    visibility timeout 0: a lower bound, since SQS does not return the oldest first) or
    null (unknown; `note` says why).
    """

    seconds: float | None = None
    source: OldestAgeSource | None = None
    sampled: int | None = None
    note: str | None = None


def _sent_seconds(value: str | None) -> float | None:
    if not value or not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value) / 1000


def oldest_age(
    *,
    queues: Queues,
    queue_url: str,
    attrs: dict[str, str],
    sample: bool | None = None,
    now: float | None = None,
) -> OldestAge:
    """CloudWatch's figure when it has one; otherwise, an estimate from a peeked sample.

    The peek (ReceiveMessage with VisibilityTimeout 0, up to 10 messages, a 1 s long poll)
    never consumes or hides a message, but it counts as a receive. `sample` None (auto)
    peeks only queues without a redrive policy (a DLQ, a plain queue): on a queue with
    one, each peek would bring the sampled messages one receive closer to being moved to
    its DLQ, so it is done only with `sample=True`. `sample=False` never peeks.
    """
    from_cloudwatch = queues.oldest_message_age(queue_url)
    if from_cloudwatch is not None:
        return OldestAge(seconds=from_cloudwatch, source="cloudwatch")
    unavailable = "CloudWatch metric unavailable"
    counts = counts_from_attributes(attrs)
    if sample is False:
        return OldestAge(note=f"{unavailable}; not sampled (--no-sample)")
    if counts.visible == 0:
        return OldestAge(
            note=f"{unavailable}; "
            + ("the queue is empty" if counts.total == 0 else "no visible message to sample")
        )
    policy = _redrive_policy(attrs)
    if sample is None and policy and policy.get("deadLetterTargetArn"):
        limit = policy.get("maxReceiveCount")
        return OldestAge(
            note=f"{unavailable}; not sampled: a peek counts as a receive toward this "
            f"queue's maxReceiveCount ({limit}); --sample peeks anyway"
        )
    try:
        got = queues.receive(
            queue_url, max_messages=10, visibility_timeout=0, wait_seconds=SAMPLE_WAIT_SECONDS
        )
    except DbopsError as exc:
        return OldestAge(note=f"{unavailable}; could not sample: {exc.one_line()}")
    sent = [t for t in (_sent_seconds(m.attributes.get("SentTimestamp")) for m in got) if t]
    if not sent:
        return OldestAge(note=f"{unavailable}; the sample returned no message")
    current = time.time() if now is None else now
    return OldestAge(
        seconds=round(max(0.0, current - min(sent)), 1),
        source="sample",
        sampled=len(sent),
        note=f"{unavailable}; at least this old: the oldest of {len(sent)} peeked message(s)",
    )


# --------------------------------------------------------------------------- list
class QueueSummary(BaseModel):
    """One row of `dbops queue list -o json`."""

    queue: str
    url: str
    fifo: bool
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    dead_letter_queue: str | None = None
    is_dead_letter_queue: bool = False
    error: str | None = None


def list_queues(*, queues: Queues, prefix: str | None = None) -> list[QueueSummary]:
    """Every queue (optionally by name prefix) with its counts and DLQ wiring."""
    rows: list[QueueSummary] = []
    arns: dict[str, str] = {}
    targets: set[str] = set()
    for url in queues.list_queues(prefix):
        name = queue_name(url)
        try:
            attrs = queues.get_attributes(url)
        except DbopsError as exc:  # deleted between list and get, or access denied
            rows.append(
                QueueSummary(queue=name, url=url, fifo=name.endswith(".fifo"), error=exc.one_line())
            )
            continue
        counts = counts_from_attributes(attrs)
        policy = _redrive_policy(attrs)
        target = policy.get("deadLetterTargetArn") if policy else None
        if target:
            targets.add(str(target))
        if attrs.get("QueueArn"):
            arns[url] = attrs["QueueArn"]
        rows.append(
            QueueSummary(
                queue=name,
                url=url,
                fifo=attrs.get("FifoQueue", "false").lower() == "true" or name.endswith(".fifo"),
                visible=counts.visible,
                in_flight=counts.in_flight,
                delayed=counts.delayed,
                dead_letter_queue=queue_name(str(target)) if target else None,
            )
        )
    for row in rows:
        row.is_dead_letter_queue = arns.get(row.url) in targets
    return sorted(rows, key=lambda r: r.queue)


# --------------------------------------------------------------------------- info
class QueueInfo(BaseModel):
    """`dbops queue info -o json`."""

    queue: str
    url: str
    arn: str | None = None
    fifo: bool = False
    visible: int
    in_flight: int
    delayed: int
    visibility_timeout_seconds: int | None = None
    retention_seconds: int | None = None
    max_message_size: int | None = None
    delay_seconds: int | None = None
    receive_wait_seconds: int | None = None
    created_at: datetime | None = None
    last_modified_at: datetime | None = None
    redrive_policy: dict[str, object] | None = None
    dead_letter_queue: str | None = None
    dead_letter_queue_url: str | None = None
    max_receive_count: int | None = None
    redrive_allow_policy: dict[str, object] | None = None
    is_dead_letter_queue: bool = False
    dead_letter_sources: list[str] = Field(default_factory=list)
    oldest_age_seconds: float | None = None
    oldest_age_source: OldestAgeSource | None = None
    oldest_age_note: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


def _redrive_policy(attrs: dict[str, str]) -> dict[str, object] | None:
    raw = attrs.get("RedrivePolicy")
    if not raw:
        return None
    try:
        loaded = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return loaded if isinstance(loaded, dict) else {"raw": raw}


def queue_info(*, queues: Queues, queue: str, sample: bool | None = None) -> QueueInfo:
    """A queue's attributes, wiring and oldest message age (see `oldest_age`)."""
    url = queues.resolve_url(queue)
    attrs = queues.get_attributes(url)
    counts = counts_from_attributes(attrs)
    policy = _redrive_policy(attrs)
    dlq_name = dlq_url = None
    max_receive = None
    if policy:
        target = policy.get("deadLetterTargetArn")
        if target:
            dlq_name = queue_name(str(target))
            try:
                dlq_url = queues.resolve_url(dlq_name)
            except DbopsError:  # another account/region, or deleted: the name still helps
                dlq_url = None
        raw_max = policy.get("maxReceiveCount")
        if raw_max is not None and str(raw_max).isdigit():
            max_receive = int(str(raw_max))
    allow = None
    if attrs.get("RedriveAllowPolicy"):
        try:
            loaded = json.loads(attrs["RedriveAllowPolicy"])
            allow = loaded if isinstance(loaded, dict) else None
        except ValueError:
            allow = None
    sources = [queue_name(u) for u in queues.dead_letter_sources(url)]
    name = queue_name(url)
    age = oldest_age(queues=queues, queue_url=url, attrs=attrs, sample=sample)
    return QueueInfo(
        queue=name,
        url=url,
        arn=attrs.get("QueueArn"),
        fifo=attrs.get("FifoQueue", "false").lower() == "true" or name.endswith(".fifo"),
        visible=counts.visible,
        in_flight=counts.in_flight,
        delayed=counts.delayed,
        visibility_timeout_seconds=_opt_int(attrs, "VisibilityTimeout"),
        retention_seconds=_opt_int(attrs, "MessageRetentionPeriod"),
        max_message_size=_opt_int(attrs, "MaximumMessageSize"),
        delay_seconds=_opt_int(attrs, "DelaySeconds"),
        receive_wait_seconds=_opt_int(attrs, "ReceiveMessageWaitTimeSeconds"),
        created_at=_timestamp(attrs, "CreatedTimestamp"),
        last_modified_at=_timestamp(attrs, "LastModifiedTimestamp"),
        redrive_policy=policy,
        dead_letter_queue=dlq_name,
        dead_letter_queue_url=dlq_url,
        max_receive_count=max_receive,
        redrive_allow_policy=allow,
        is_dead_letter_queue=bool(sources),
        dead_letter_sources=sources,
        oldest_age_seconds=age.seconds,
        oldest_age_source=age.source,
        oldest_age_note=age.note,
        attributes=attrs,
    )


# --------------------------------------------------------------------------- depth
class QueueDepth(BaseModel):
    """One row of `dbops queue depth -o json`.

    `oldest_age_seconds` comes from `oldest_age_source`: `cloudwatch`
    (ApproximateAgeOfOldestMessage), `sample` (estimated from the SentTimestamp of peeked
    messages: a lower bound) or null (unknown, with the reason in `oldest_age_note`).
    """

    queue: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    total: int
    oldest_age_seconds: float | None = None
    oldest_age_source: OldestAgeSource | None = None
    oldest_age_note: str | None = None


def depth(
    *, queues: Queues, queue_urls: Sequence[str], sample: bool | None = None
) -> list[QueueDepth]:
    rows = []
    for url in queue_urls:
        attrs = queues.get_attributes(url)
        counts = counts_from_attributes(attrs)
        age = oldest_age(queues=queues, queue_url=url, attrs=attrs, sample=sample)
        rows.append(
            QueueDepth(
                queue=queue_name(url),
                url=url,
                visible=counts.visible,
                in_flight=counts.in_flight,
                delayed=counts.delayed,
                total=counts.total,
                oldest_age_seconds=age.seconds,
                oldest_age_source=age.source,
                oldest_age_note=age.note,
            )
        )
    return rows


# --------------------------------------------------------------------------- watch
class WatchSample(BaseModel):
    """One line of `dbops queue watch -o jsonl` (one per queue per interval).

    SQS only exposes approximate counts, so rates are derived from the change in the
    total (visible + in flight + delayed): `in_rate` is the observed net growth, `out_rate`
    the observed net shrinkage over the last interval (messages that arrive and leave in
    the same interval cancel out). `drain_rate` is the net shrinkage averaged over the
    tracker's window; `time_to_empty_seconds` is total / drain_rate when draining, 0 when
    empty, null otherwise.
    """

    sample: int
    at: datetime
    queue: str
    visible: int
    in_flight: int
    delayed: int
    total: int
    interval_seconds: float | None = None
    in_rate: float | None = None
    out_rate: float | None = None
    drain_rate: float | None = None
    time_to_empty_seconds: float | None = None


class RateTracker:
    """Rates from successive samples of one queue. Pure: the caller passes the times."""

    def __init__(self, queue: str, *, window: int = 30) -> None:
        if window < 2:
            raise ValueError("window must hold at least two samples")
        self.queue = queue
        self._history: deque[tuple[float, int]] = deque(maxlen=window)
        self._count = 0

    @property
    def totals(self) -> list[int]:
        """The totals of the samples in the window, oldest first (for a sparkline)."""
        return [total for _at, total in self._history]

    def add(self, counts: QueueCounts, *, at: float) -> WatchSample:
        """Record a sample taken at `at` (epoch seconds) and return it with its rates."""
        total = counts.total
        previous = self._history[-1] if self._history else None
        self._history.append((at, total))
        self._count += 1
        interval = in_rate = out_rate = drain = tte = None
        if previous is not None and at > previous[0]:
            interval = at - previous[0]
            change = (total - previous[1]) / interval
            in_rate = max(0.0, change)
            out_rate = max(0.0, -change)
        first = self._history[0]
        if len(self._history) >= 2 and at > first[0]:
            drain = (first[1] - total) / (at - first[0])
        if total == 0:
            tte = 0.0
        elif drain is not None and drain > 0:
            tte = total / drain
        return WatchSample(
            sample=self._count,
            at=datetime.fromtimestamp(at, tz=UTC),
            queue=self.queue,
            visible=counts.visible,
            in_flight=counts.in_flight,
            delayed=counts.delayed,
            total=total,
            interval_seconds=_round(interval),
            in_rate=_round(in_rate),
            out_rate=_round(out_rate),
            drain_rate=_round(drain),
            time_to_empty_seconds=_round(tte),
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
