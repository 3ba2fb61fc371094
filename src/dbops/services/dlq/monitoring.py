"""`dlq monitor`: the DLQ depth against a threshold, Slack alerts when it grew."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from dbops.errors import DbopsError, UsageError
from dbops.names import queue_name
from dbops.ports import Queues, Store
from dbops.services import slack
from dbops.services.dlq.listing import preview_text
from dbops.services.dlq.scan import peek
from dbops.services.messages import ParsedMessage
from dbops.services.queue import QueueCounts, read_counts
from dbops.services.redact import mask_optional


class MonitorResult(BaseModel):
    """`dbops dlq monitor -o json`: exit 1 when `alerting`, 0 otherwise."""

    queue: str
    depth: int
    visible: int
    in_flight: int
    delayed: int
    threshold: int
    alerting: bool
    notify: str | None = None
    notified: bool = False
    notify_skipped: str | None = None
    notify_error: str | None = None
    last_alert_depth: int | None = None
    state: Literal["database", "unavailable", "not used"] = "not used"
    checked_at: datetime
    messages: list[slack.AlertMessage] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _alert_messages(*, queues: Queues, queue_url: str, count: int) -> list[slack.AlertMessage]:
    messages, _ = peek(queues=queues, queue_url=queue_url, limit=count)
    messages.sort(key=lambda m: (m.sent_at is None, m.sent_at or datetime.min.replace(tzinfo=UTC)))
    return [alert_message(m) for m in messages]


def alert_message(m: ParsedMessage) -> slack.AlertMessage:
    """How a message is quoted in a Slack alert: personal data always masked."""
    return slack.AlertMessage(
        message_id=m.message_id,
        job_id=mask_optional(m.job_id),
        customer=mask_optional(m.customer_id),
        reason=mask_optional(m.reason) if m.is_json else preview_text(m),
        age_seconds=round(m.age_seconds, 1) if m.age_seconds is not None else None,
    )


def monitor(
    *,
    queues: Queues,
    queue_url: str,
    threshold: int,
    notifier: slack.Notifier | None = None,
    channel: str | None = None,
    store: Store | None = None,
    store_warning: str | None = None,
    sample_size: int = 5,
    profile: str | None = None,
) -> MonitorResult:
    """Check the DLQ depth against `threshold`; with a notifier, alert when it grew.

    Alert state lives in the database (`dbops_dlq_monitor_*`): an alert is sent when the
    depth is at or above the threshold and greater than at the last alert, and the state
    resets once the depth drops below the threshold. Without a database every alerting
    check notifies (and says so). A notifier failure is reported in `notify_error`.
    `profile` (the one the monitor runs with) is named in the alert's next commands.
    """
    if threshold < 1:
        raise UsageError(f"invalid threshold {threshold}: must be at least 1")
    counts: QueueCounts = read_counts(queues=queues, queue_url=queue_url)
    name = queue_name(queue_url)
    result = MonitorResult(
        queue=name,
        depth=counts.total,
        visible=counts.visible,
        in_flight=counts.in_flight,
        delayed=counts.delayed,
        threshold=threshold,
        alerting=counts.total >= threshold,
        checked_at=datetime.now(UTC),
    )
    if notifier is None:
        return result
    result.notify = channel or notifier.name
    state_ok = _read_state(result, store=store, store_warning=store_warning, queue_url=queue_url)
    if not result.alerting:
        result.notify_skipped = "below threshold"
    elif result.last_alert_depth is not None and counts.total <= result.last_alert_depth:
        result.notify_skipped = (
            f"depth has not grown since the last alert (at depth {result.last_alert_depth})"
        )
    else:
        _notify(
            result,
            queues=queues,
            queue_url=queue_url,
            notifier=notifier,
            count=sample_size,
            profile=profile,
        )
    if state_ok and store is not None:
        try:
            store.call(
                "dbops_dlq_monitor_record",
                {
                    "p_queue": queue_url,
                    "p_depth": counts.total,
                    "p_alerting": result.alerting,
                    "p_notified": result.notified,
                },
            )
        except DbopsError as exc:
            result.warnings.append(f"could not record alert state: {exc.one_line()}")
    return result


def _read_state(
    result: MonitorResult, *, store: Store | None, store_warning: str | None, queue_url: str
) -> bool:
    """Fill the last alert depth from the database; False when there is no alert state."""
    if store is None:
        result.state = "unavailable"
        result.warnings.append(
            (store_warning or "no database")
            + ": alert state is not kept, so every alerting check notifies"
        )
        return False
    try:
        rows = store.call("dbops_dlq_monitor_get", {"p_queue": queue_url})
    except DbopsError as exc:
        result.state = "unavailable"
        result.warnings.append(
            f"alert state unavailable ({exc.one_line()}): every alerting check notifies"
        )
        return False
    result.state = "database"
    if rows and rows[0].get("last_alert_depth") is not None:
        result.last_alert_depth = int(rows[0]["last_alert_depth"])
    return True


def _notify(
    result: MonitorResult,
    *,
    queues: Queues,
    queue_url: str,
    notifier: slack.Notifier,
    count: int,
    profile: str | None,
) -> None:
    """Sample the messages and send the alert; a failure is kept in `notify_error`."""
    try:
        result.messages = _alert_messages(queues=queues, queue_url=queue_url, count=count)
    except DbopsError as exc:
        result.warnings.append(f"could not sample messages: {exc.one_line()}")
    payload = slack.dlq_alert(
        queue=result.queue,
        depth=result.depth,
        threshold=result.threshold,
        previous_alert_depth=result.last_alert_depth,
        messages=result.messages,
        profile=profile,
    )
    try:
        notifier.send(payload)
        result.notified = True
    except DbopsError as exc:
        result.notify_error = exc.one_line()
