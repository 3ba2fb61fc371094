"""Audit checks `queue.*`: depths and ages of the main queue and the DLQ, and the queue
configuration (redrive policy, maxReceiveCount, retention, visibility)."""

from __future__ import annotations

import json
from typing import Any

from dbops.services.audit.base import (
    CheckSpec,
    Context,
    Outcome,
    QueueState,
    age_text,
    count_level,
    plural,
    registrar,
)

CHECKS: list[CheckSpec] = []
check = registrar(CHECKS)

OLDEST_AGE_CRITICAL_FACTOR = 6  # oldest message: warning > stale threshold, critical > 6x
MAX_RECEIVE_RANGE = (2, 10)


@check("queue.backlog", "Main queue backlog", 8, "dbops queue watch", main_queue=True)
def _queue_backlog(ctx: Context) -> Outcome:
    warn, crit = ctx.t.backlog_warning, ctx.t.backlog_critical
    threshold = f"warning > {warn}, critical > {crit} visible messages"
    assert ctx.main is not None
    visible = ctx.main.number("ApproximateNumberOfMessages") or 0
    in_flight = ctx.main.number("ApproximateNumberOfMessagesNotVisible") or 0
    delayed = ctx.main.number("ApproximateNumberOfMessagesDelayed") or 0
    details = {
        "queue": ctx.main.name,
        "visible": visible,
        "in_flight": in_flight,
        "delayed": delayed,
    }
    text = f"{visible} visible, {in_flight} in flight on {ctx.main.name}"
    if visible > crit:
        return Outcome("critical", text, observed=visible, threshold=threshold, details=details)
    if visible > warn:
        return Outcome("warning", text, observed=visible, threshold=threshold, details=details)
    return Outcome("ok", text, observed=visible, threshold=threshold, details=details)


@check("queue.oldest_age", "Oldest message age", 4, "dbops queue depth", main_queue=True)
def _queue_oldest_age(ctx: Context) -> Outcome:
    warn = ctx.stale_seconds
    crit = warn * OLDEST_AGE_CRITICAL_FACTOR
    threshold = f"warning > {age_text(warn)}, critical > {age_text(crit)}"
    age = ctx.oldest_age
    if age is None:
        return Outcome(
            "skipped",
            "CloudWatch has no ApproximateAgeOfOldestMessage data for this queue",
            threshold=threshold,
        )
    age = round(age, 1)
    text = f"oldest message is {age_text(age)} old"
    if age > crit:
        return Outcome("critical", text, observed=age, threshold=threshold)
    if age > warn:
        return Outcome("warning", text, observed=age, threshold=threshold)
    return Outcome("ok", text, observed=age, threshold=threshold)


def _dlq_numbers(dlq: QueueState) -> tuple[int, int]:
    return (
        dlq.number("ApproximateNumberOfMessages") or 0,
        dlq.number("ApproximateNumberOfMessagesNotVisible") or 0,
    )


@check("queue.dlq_depth", "Dead-letter queue depth", 10, "dbops dlq list", dlq=True)
def _queue_dlq_depth(ctx: Context) -> Outcome:
    warn, crit = ctx.dlq_warning, ctx.t.dlq_critical
    threshold = f"warning >= {warn}, critical >= {crit} messages"
    assert ctx.dlq is not None
    visible, in_flight = _dlq_numbers(ctx.dlq)
    depth = visible + in_flight
    details = {"queue": ctx.dlq.name, "visible": visible, "in_flight": in_flight}
    if depth == 0:
        return Outcome(
            "ok", f"{ctx.dlq.name} is empty", observed=0, threshold=threshold, details=details
        )
    text = f"{plural(depth, 'message')} in the dead-letter queue {ctx.dlq.name}"
    return Outcome(
        count_level(depth, warn, crit), text, observed=depth, threshold=threshold, details=details
    )


@check("queue.dlq_growth", "DLQ growth since previous run", 4, "dbops dlq list", dlq=True)
def _queue_dlq_growth(ctx: Context) -> Outcome:
    crit = ctx.t.dlq_critical
    threshold = f"warning > 0, critical >= {crit} more messages than the previous run"
    assert ctx.dlq is not None
    visible, in_flight = _dlq_numbers(ctx.dlq)
    depth = visible + in_flight
    before = ctx.previous_dlq
    if not before or not isinstance(before.get("depth"), int | float):
        return Outcome(
            "skipped", "no previous stored run measured the DLQ depth", threshold=threshold
        )
    prev_queue = before.get("queue")
    if prev_queue and ctx.dlq.name and prev_queue != ctx.dlq.name:
        return Outcome(
            "skipped",
            f"the previous run measured another queue ({prev_queue})",
            threshold=threshold,
        )
    prev = int(before["depth"])
    growth = depth - prev
    details = {
        "previous_depth": prev,
        "depth": depth,
        "previous_run_id": before.get("id"),
        "previous_generated_at": before.get("generated_at"),
    }
    text = f"DLQ depth {prev} -> {depth} since the previous run"
    if growth <= 0:
        return Outcome("ok", text, observed=growth, threshold=threshold, details=details)
    return Outcome(
        "critical" if growth >= crit else "warning",
        text,
        observed=growth,
        threshold=threshold,
        details=details,
    )


def redrive_policy(main: QueueState) -> dict[str, Any] | None:
    raw = (main.attrs or {}).get("RedrivePolicy")
    if not raw:
        return None
    try:
        policy = json.loads(raw)
    except ValueError:
        return None
    return policy if isinstance(policy, dict) else None


@check("queue.config.dlq_attached", "DLQ attached", 6, "dbops queue info", main_queue=True)
def _config_dlq_attached(ctx: Context) -> Outcome:
    threshold = "the main queue has a redrive policy targeting the configured DLQ"
    assert ctx.main is not None
    policy = redrive_policy(ctx.main)
    if policy is None or not policy.get("deadLetterTargetArn"):
        return Outcome(
            "critical",
            f"{ctx.main.name} has no redrive policy: failing messages are "
            "retried until they expire, and are then lost",
            observed="none",
            threshold=threshold,
        )
    target = str(policy["deadLetterTargetArn"]).rsplit(":", 1)[-1]
    dlq_arn = (ctx.dlq.attrs or {}).get("QueueArn") if ctx.dlq is not None else None
    if dlq_arn and dlq_arn != policy["deadLetterTargetArn"]:
        return Outcome(
            "warning",
            f"the redrive policy targets {target}, not the configured DLQ "
            f"{ctx.dlq.name if ctx.dlq else ''}",
            observed=target,
            threshold=threshold,
        )
    return Outcome("ok", f"{ctx.main.name} -> {target}", observed=target, threshold=threshold)


@check("queue.config.max_receive", "maxReceiveCount sane", 2, "dbops queue info", main_queue=True)
def _config_max_receive(ctx: Context) -> Outcome:
    low, high = MAX_RECEIVE_RANGE
    threshold = f"maxReceiveCount between {low} and {high} (team default 3)"
    assert ctx.main is not None
    policy = redrive_policy(ctx.main)
    if policy is None:
        return Outcome(
            "skipped", "no redrive policy (see queue.config.dlq_attached)", threshold=threshold
        )
    try:
        count = int(str(policy.get("maxReceiveCount")))
    except (TypeError, ValueError):
        return Outcome(
            "warning",
            "the redrive policy has no valid maxReceiveCount",
            observed=str(policy.get("maxReceiveCount")),
            threshold=threshold,
        )
    if count < low:
        return Outcome(
            "warning",
            f"maxReceiveCount {count}: one failed delivery sends a message to the DLQ",
            observed=count,
            threshold=threshold,
        )
    if count > high:
        return Outcome(
            "warning",
            f"maxReceiveCount {count}: poison messages are retried for a "
            "long time before reaching the DLQ",
            observed=count,
            threshold=threshold,
        )
    return Outcome("ok", f"maxReceiveCount {count}", observed=count, threshold=threshold)


@check(
    "queue.config.retention",
    "DLQ retention > main retention",
    2,
    "dbops queue info",
    main_queue=True,
    dlq=True,
)
def _config_retention(ctx: Context) -> Outcome:
    threshold = "DLQ retention longer than the main queue's"
    assert ctx.main is not None and ctx.dlq is not None
    main_r = ctx.main.number("MessageRetentionPeriod")
    dlq_r = ctx.dlq.number("MessageRetentionPeriod")
    if main_r is None or dlq_r is None:
        return Outcome("unknown", "retention periods not reported by SQS", threshold=threshold)
    details = {"main_seconds": main_r, "dlq_seconds": dlq_r}
    text = f"DLQ keeps messages {age_text(dlq_r)}, main queue {age_text(main_r)}"
    if dlq_r <= main_r:
        return Outcome(
            "warning",
            text + ": messages keep their original enqueue time, so they "
            "can expire in the DLQ before anyone looks",
            observed=dlq_r,
            threshold=threshold,
            details=details,
        )
    return Outcome("ok", text, observed=dlq_r, threshold=threshold, details=details)


@check(
    "queue.config.visibility",
    "Visibility timeout >= job timeout",
    2,
    "dbops queue info",
    main_queue=True,
)
def _config_visibility(ctx: Context) -> Outcome:
    job_timeout = ctx.t.job_timeout_seconds
    threshold = (
        f"visibility timeout >= job timeout ({job_timeout} s)"
        if job_timeout
        else "visibility timeout >= audit.job_timeout_seconds"
    )
    assert ctx.main is not None
    visibility = ctx.main.number("VisibilityTimeout")
    if not job_timeout:
        return Outcome(
            "skipped",
            "no job timeout configured (set job_timeout_seconds under [profiles.NAME.audit])",
            threshold=threshold,
        )
    if visibility is None:
        return Outcome("unknown", "visibility timeout not reported by SQS", threshold=threshold)
    text = f"visibility timeout {visibility} s, job timeout {job_timeout} s"
    if visibility < job_timeout:
        return Outcome(
            "warning",
            text + ": a slow job's message becomes visible again and is processed twice",
            observed=visibility,
            threshold=threshold,
        )
    return Outcome("ok", text, observed=visibility, threshold=threshold)
