"""`dbops jobs`: find, inspect and safely recover stale and orphaned jobs.

This module holds the group's app, the options its commands share and the read commands
(list, show, stats, stale, orphans); the commands that change jobs (recover, requeue,
retry, fail) are in jobs_actions_cmd.py, registered onto the same app by cli/main.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._common import duration
from dbops.cli.output import Output, OutputOpt, key_values, message, print_table, render, to_data
from dbops.durations import format_duration
from dbops.services import jobs

app = typer.Typer(
    help="Find, inspect and safely recover stale and orphaned jobs.", no_args_is_help=True
)

OlderThanStale = Annotated[
    str | None,
    typer.Option(
        "--older-than",
        help="No sign of life for this long, e.g. 10m, 2h (default: STALE_THRESHOLD_MINUTES, "
        "else 10m).",
        show_default=False,
    ),
]
LimitOpt = Annotated[int, typer.Option(min=1, max=100_000, help="At most this many jobs.")]

STALE_COLUMNS = [
    "id",
    "customer_id",
    "priority_level",
    "last_activity_at",
    "age",
    "worker_id",
    "worker_alive",
    "recoveries",
]


def _stale_default() -> int:
    return _deps.settings().stale_threshold_minutes * 60


def _with_age(items: Sequence[Any], field: str = "age_seconds") -> list[dict[str, Any]]:
    rows = []
    for item in to_data(list(items)):
        item["age"] = format_duration(item.get(field))
        rows.append(item)
    return rows


# --------------------------------------------------------------------------- read
@app.command("list")
def list_cmd(
    status: Annotated[
        str | None,
        typer.Option(
            help="pending, in_progress, completed (includes legacy complete), failed, cancelled."
        ),
    ] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer_id.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created within this long, e.g. 24h, 7d.")
    ] = None,
    limit: LimitOpt = 50,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """List jobs, newest first.

    Example:
        dbops jobs list --status failed --since 24h -o json
    """
    found = jobs.list_jobs(
        store=_deps.store(),
        status=status,
        customer=customer,
        since_seconds=duration(since, "--since"),
        limit=limit,
    )
    render(
        found,
        output,
        columns=[
            "id",
            "customer_id",
            "status",
            "priority_level",
            "created_at",
            "updated_at",
            "error_message",
        ],
        empty="no jobs match",
    )


@app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="The job's UUID or a unique prefix.")],
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show personal data (emails, phones, names) unmasked.")
    ] = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Show one job: results by status, last 20 events, worker, recoveries, DLQ messages.

    DLQ messages for the job are peeked (received with a short visibility timeout and
    made visible again at once), never consumed; the scan is bounded (10 receives).
    Personal data in customer_id, error_message, metadata, event details and the DLQ
    messages' reason and body is masked unless --reveal.

    Example:
        dbops jobs show 6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060 -o json
    """
    current = _deps.settings()
    detail = jobs.show(
        store=_deps.store(),
        job_id=job_id,
        queues=_deps.queues() if current.sqs_dlq_url else None,
        dlq_url=current.sqs_dlq_url,
        reveal=reveal,
    )
    render(detail, output, table=_show_table)


def _show_table(detail: jobs.JobDetail) -> None:
    job = detail.job.model_dump(mode="json")
    job["last_activity_at"] = detail.model_dump(mode="json")["last_activity_at"]
    job["results_by_status"] = detail.results_by_status
    key_values(job, title=f"job {detail.job.id}")
    if detail.worker:
        key_values(detail.worker.model_dump(mode="json"), title="worker holding it")
    if detail.recoveries:
        print_table(
            to_data(detail.recoveries),
            ["id", "kind", "action", "attempt", "operator", "state", "message_id", "created_at"],
            title="recoveries by dbops",
        )
    if detail.history:
        print_table(
            to_data(detail.history),
            ["created_at", "event", "worker_id", "details"],
            title=f"last {len(detail.history)} events",
        )
    if detail.dlq_error:
        message(f"DLQ not checked: {detail.dlq_error}")
    elif detail.dlq_messages is not None:
        if detail.dlq_messages:
            print_table(
                to_data(detail.dlq_messages),
                ["message_id", "sent_at", "receive_count", "reason", "body"],
                title="messages in the DLQ (peeked, not consumed)",
            )
        else:
            message(f"no DLQ message for this job among {detail.dlq_scanned} peeked")


@app.command("stats")
def stats(
    since: Annotated[str, typer.Option(help="Window, e.g. 24h, 7d.")] = "24h",
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Counts by status, completed/failed per hour, error rate, runtime p50/p95.

    Also results stuck in `submitting` and legacy `complete` rows.

    Example:
        dbops jobs stats --since 7d -o json
    """
    current = _deps.settings()
    result = jobs.stats(
        store=_deps.store(),
        since_seconds=duration(since, "--since") or 0,
        submitting_seconds=current.audit.submitting_minutes * 60,
    )
    render(result, output, table=_stats_table)


def _stats_table(result: jobs.JobStats) -> None:
    summary = result.model_dump(
        mode="json", exclude={"hourly", "runtime_p50_seconds", "runtime_p95_seconds"}
    )
    summary["runtime_p50"] = format_duration(result.runtime_p50_seconds)
    summary["runtime_p95"] = format_duration(result.runtime_p95_seconds)
    key_values(summary, title=f"jobs in the last {format_duration(result.since_seconds)}")
    busy = [h for h in to_data(result.hourly) if h["completed"] or h["failed"]]
    if busy:
        print_table(_with_bars(busy), ["hour", "completed", "failed"], title="per hour")


def _with_bars(hours: list[dict[str, Any]], width: int = 20) -> list[dict[str, Any]]:
    """Completed and failed per hour as numbers with bars, on one scale (table only)."""
    from dbops.cli.charts import bar

    peak = max(max(h["completed"], h["failed"]) for h in hours)
    digits = len(str(peak))
    for hour in hours:
        for key in ("completed", "failed"):
            hour[key] = f"{hour[key]:>{digits}} {bar(hour[key], peak, width)}".rstrip()
    return hours


@app.command("stale")
def stale_cmd(
    older_than: OlderThanStale = None,
    limit: LimitOpt = 100,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """List in-progress jobs with no sign of life (row update or worker heartbeat).

    Example:
        dbops jobs stale --older-than 15m -o json
    """
    seconds = duration(older_than, "--older-than") or _stale_default()
    found = jobs.stale(store=_deps.store(), older_than_seconds=seconds, limit=limit)
    if output is Output.table:
        render(_with_age(found), output, columns=STALE_COLUMNS, empty="no stale jobs")
        return
    render(found, output, columns=STALE_COLUMNS[:4] + STALE_COLUMNS[5:])


@app.command("orphans")
def orphans_cmd(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", help="Pending for this long (default 30m).", show_default=False
        ),
    ] = None,
    limit: LimitOpt = 100,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """List pending jobs nobody picked up: no queue_claimed event, no dbops re-queue.

    Example:
        dbops jobs orphans --older-than 1h -o json
    """
    seconds = duration(older_than, "--older-than") or _deps.settings().audit.orphaned_minutes * 60
    found = jobs.orphans(store=_deps.store(), older_than_seconds=seconds, limit=limit)
    columns = ["id", "customer_id", "priority_level", "pending_since", "age", "recoveries"]
    if output is Output.table:
        render(_with_age(found), output, columns=columns, empty="no orphaned jobs")
        return
    render(found, output, columns=[c for c in columns if c != "age"])
