"""`dbops jobs`: find, inspect and safely recover stale and orphaned jobs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, duration, is_interactive, recorder
from dbops.cli.output import (
    Output,
    OutputOpt,
    err_console,
    key_values,
    message,
    print_table,
    render,
    to_data,
)
from dbops.durations import format_duration
from dbops.errors import RemoteError, UsageError
from dbops.services import jobs
from dbops.services.redact import redact_text

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
GroupByOpt = Annotated[
    jobs.GroupBy,
    typer.Option(
        "--group-by",
        help="FIFO main queue: MessageGroupId per job (default) or per customer.",
    ),
]

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


def _machine(output: Output) -> bool:
    return output is not Output.table


def _show_preview(output: Output) -> bool:
    """Previews go to stderr: always for tables, and when a prompt will follow."""
    return output is Output.table or is_interactive()


def _preview_table(items: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for item in items:
        cells = []
        for column in columns:
            value = item.get(column)
            if isinstance(value, bool):
                text = "yes" if value else "no"
            else:
                text = "" if value is None else str(value)
            cells.append(escape(text))
        grid.add_row(*cells)
    err_console().print(grid)


@contextmanager
def _progress(expected: int, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich progress bar on stderr when more than one SQS batch is expected on a TTY."""
    if expected <= jobs.SQS_BATCH or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=expected)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))

        yield update


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
        print_table(busy, ["hour", "completed", "failed"], title="per hour")


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


# --------------------------------------------------------------------------- recover
@app.command("recover")
def recover(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Recover jobs without sign of life for this long (default: "
            "STALE_THRESHOLD_MINUTES, else 10m). At least 2m, the time after which a worker "
            "without heartbeat counts as dead: anything shorter is refused (exit 2).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="Claim at most this many jobs this run.")
    ] = 1000,
    max_recoveries: Annotated[
        int,
        typer.Option(min=0, help="Jobs already re-queued this many times are failed instead."),
    ] = 3,
    chunk_size: Annotated[
        int, typer.Option(min=10, max=10_000, help="Jobs claimed per database transaction.")
    ] = jobs.DEFAULT_CHUNK,
    group_by: GroupByOpt = "job",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Re-queue stale jobs (fail those at the retry cap), crash-safe, one message per job.

    First sends messages left unsent by an earlier run that crashed (the dbops outbox),
    then claims stale jobs in one transaction per chunk (FOR UPDATE SKIP LOCKED, so two
    operators never claim the same job), then sends one SQS message per re-queued job in
    batches of 10. If SQS fails mid-run the claimed jobs stay in the outbox: re-run.
    (Killed between SQS accepting a batch and recording it, a re-run resends those few
    messages: at least once, never lost; see docs/jobs.md.)

    Example:
        dbops jobs recover --older-than 15m --dry-run
        dbops jobs recover --older-than 15m --max-recoveries 3 --yes -o json
    """
    seconds = duration(older_than, "--older-than") or _stale_default()
    jobs.check_recover_threshold(seconds, given=older_than)
    store = _deps.store()
    preview = jobs.recover_preview(
        store=store, older_than_seconds=seconds, limit=limit, max_recoveries=max_recoveries
    )
    queue_url = None if dry_run else _deps.main_queue_url()
    if _show_preview(output):
        _recover_preview(preview)
    pending = preview.would_requeue + preview.outbox.unsent - preview.outbox.leased_elsewhere
    nothing_to_do = not preview.would_claim and not (
        preview.outbox.unsent - preview.outbox.leased_elsewhere
    )
    if nothing_to_do:
        if _show_preview(output):
            message("nothing to recover")
        render(
            jobs.recover_dry_run(preview).model_copy(update={"dry_run": dry_run}),
            output,
            table=_recover_table,
        )
        return
    confirm(
        f"re-queue {preview.would_requeue} and fail {preview.would_abandon} stale job(s)"
        + (
            f", and send {preview.outbox.unsent} unsent message(s)" if preview.outbox.unsent else ""
        ),
        yes=yes,
        dry_run=dry_run,
    )
    arguments = {
        "older_than_seconds": seconds,
        "limit": limit,
        "max_recoveries": max_recoveries,
        "chunk_size": chunk_size,
        "group_by": group_by,
        "queue_url": queue_url,
    }
    with recorder("jobs recover", arguments, dry_run=dry_run) as rec:
        if dry_run:
            result = jobs.recover_dry_run(preview)
        else:
            assert queue_url is not None
            with _progress(pending, "sending") as progress:
                try:
                    result = jobs.recover(
                        store=store,
                        queues=_deps.queues(),
                        queue_url=queue_url,
                        operator=_deps.operator(),
                        older_than_seconds=seconds,
                        # never more than previewed and confirmed
                        limit=preview.would_claim,
                        max_recoveries=max_recoveries,
                        chunk_size=chunk_size,
                        progress=progress,
                        group_by=group_by,
                        checkpoint=checkpoint_from_env(),
                    )
                except jobs.RecoveryIncomplete as exc:
                    if isinstance(exc.result, jobs.RecoverResult):
                        rec.counts = exc.result.counts()
                    raise
        result.more_stale = result.more_stale or preview.more_stale
        rec.counts = result.counts()
        render(result, output, table=_recover_table)
        _raise_on_failed_sends(result.failed_sends, result.jobs, "dbops jobs recover")


def _recover_preview(preview: jobs.RecoverPreview) -> None:
    lines = [
        f"stale (no sign of life for {format_duration(preview.older_than_seconds)}): "
        f"{preview.would_claim}{'+' if preview.more_stale else ''} to claim (limit "
        f"{preview.limit}): {preview.would_requeue} to re-queue, {preview.would_abandon} to "
        f"fail at the cap of {preview.max_recoveries} recoveries",
    ]
    if preview.outbox.unsent:
        lines.append(
            f"dbops outbox: {preview.outbox.unsent} message(s) left unsent by an earlier run "
            f"(sent first; {preview.outbox.leased_elsewhere} held by a run still going)"
        )
    for line in lines:
        message(line)
    if preview.stale:
        first = _with_age(preview.stale[:10])
        for row in first:
            row["action"] = (
                "requeue" if row["recoveries"] < preview.max_recoveries else "fail (cap)"
            )
        _preview_table(
            first,
            ["id", "customer_id", "last_activity_at", "age", "worker_id", "recoveries", "action"],
            title=f"first {len(first)} of {preview.would_claim}",
        )


def _recover_table(result: jobs.RecoverResult | jobs.RequeueResult) -> None:
    summary = {k: v for k, v in result.model_dump(mode="json").items() if k != "jobs"}
    key_values(summary, title="dry run: nothing changed" if result.dry_run else "recovery")
    if result.jobs:
        shown = to_data(result.jobs[:20])
        print_table(
            shown,
            ["job_id", "customer_id", "action", "attempt", "sent", "message_id", "error"],
            title=f"jobs ({len(shown)} of {len(result.jobs)})",
        )


def _raise_on_failed_sends(failed: int, items: Sequence[jobs.RecoveredJob], command: str) -> None:
    if failed:
        first = next((j.error for j in items if j.error and not j.sent), None)
        raise RemoteError(
            f"SQS refused {failed} message(s) (first: {first}); they wait in the dbops "
            f"outbox: re-run `{command}` to send them"
        )


# --------------------------------------------------------------------------- requeue
@app.command("requeue")
def requeue(
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="Job ids (pending or failed).", show_default=False)
    ] = None,
    orphans: Annotated[
        bool, typer.Option("--orphans", help="Re-queue the orphaned pending jobs instead.")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="With --orphans: pending for this long (default 30m).",
            show_default=False,
        ),
    ] = None,
    limit: LimitOpt = 100,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also send pending jobs dbops already enqueued since their last state change.",
        ),
    ] = False,
    group_by: GroupByOpt = "job",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Re-queue pending/failed jobs, or orphans, through the same outbox as `recover`.

    Each job's status is re-checked when its row is locked: a job another operator
    changed since the preview is skipped (`skipped_changed`), and a pending job dbops
    already enqueued since its last state change is skipped (`skipped_enqueued`) unless
    --force.

    Example:
        dbops jobs requeue 6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060 --yes
        dbops jobs requeue --orphans --older-than 1h --dry-run
    """
    if orphans == bool(job_ids):
        raise UsageError("give job ids or --orphans (not both)")
    if older_than is not None and not orphans:
        raise UsageError("--older-than only applies with --orphans")
    orphan_seconds = None
    if orphans:
        orphan_seconds = (
            duration(older_than, "--older-than") or _deps.settings().audit.orphaned_minutes * 60
        )
    ids = jobs.resolve_job_ids(job_ids, store=_deps.store()) if job_ids else []
    store = _deps.store()
    preview = jobs.requeue_preview(
        store=store, job_ids=ids, orphans_older_than_seconds=orphan_seconds, limit=limit
    )
    queue_url = None if dry_run else _deps.main_queue_url()
    if _show_preview(output):
        message(
            f"{preview.would_requeue} job(s) to re-queue, {preview.would_skip} to skip"
            + (
                f"; {preview.outbox.unsent} unsent outbox message(s) sent first"
                if preview.outbox.unsent
                else ""
            )
        )
        if preview.jobs:
            _preview_table(
                to_data(preview.jobs[:10]),
                ["id", "customer_id", "status", "updated_at", "recoveries", "unsent"],
                title=f"first {min(10, len(preview.jobs))} of {len(preview.jobs)}",
            )
    if not preview.jobs:
        render(jobs.requeue_dry_run(preview), output, table=_recover_table)
        return
    confirm(f"re-queue {preview.would_requeue} job(s)", yes=yes, dry_run=dry_run)
    arguments = {
        "job_ids": ids,
        "orphans": orphans,
        "older_than_seconds": orphan_seconds,
        "limit": limit,
        "force": force,
        "group_by": group_by,
        "queue_url": queue_url,
    }
    with recorder("jobs requeue", arguments, dry_run=dry_run) as rec:
        if dry_run:
            result = jobs.requeue_dry_run(preview)
        else:
            assert queue_url is not None
            with _progress(preview.would_requeue + preview.outbox.unsent, "sending") as progress:
                try:
                    result = jobs.requeue(
                        store=store,
                        queues=_deps.queues(),
                        queue_url=queue_url,
                        operator=_deps.operator(),
                        job_ids=[str(j.id) for j in preview.jobs],
                        orphans_older_than_seconds=orphan_seconds,
                        progress=progress,
                        expected={str(j.id): j.status for j in preview.jobs},
                        force=force,
                        group_by=group_by,
                        checkpoint=checkpoint_from_env(),
                    )
                except jobs.RecoveryIncomplete as exc:
                    if isinstance(exc.result, jobs.RequeueResult):
                        rec.counts = exc.result.counts()
                    raise
        rec.counts = result.counts()
        render(result, output, table=_recover_table)
        _raise_on_failed_sends(result.failed_sends, result.jobs, "dbops jobs recover")


# --------------------------------------------------------------------------- fail
@app.command("fail")
def fail(
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or prefixes.", show_default=False)],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (stored in error_message and the history).")
    ],
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Mark jobs failed with a reason (pending jobs, or in-progress ones without sign of life).

    Example:
        dbops jobs fail 6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060 --reason "bad input file" --yes
    """
    ids = jobs.resolve_job_ids(job_ids, store=_deps.store())
    reason = redact_text(" ".join(reason.split()))
    if not reason:
        raise UsageError("--reason must not be empty")
    store = _deps.store()
    preview = jobs.fail_preview(store=store, job_ids=ids)
    planned = jobs.fail_dry_run(preview, reason)
    if _show_preview(output):
        message(f"{planned.failed} job(s) to fail, {planned.skipped} to skip")
        _preview_table(
            to_data(planned.jobs[:10]),
            ["job_id", "previous_status", "status", "reason"],
            title=f"first {min(10, len(planned.jobs))} of {len(planned.jobs)}",
        )
    confirm(f"fail {planned.failed} job(s)", yes=yes, dry_run=dry_run)
    with recorder("jobs fail", {"job_ids": ids, "reason": reason}, dry_run=dry_run) as rec:
        result = (
            planned
            if dry_run
            else jobs.fail(
                store=store,
                job_ids=ids,
                reason=reason,
                operator=_deps.operator(),
                expected={str(j.id): j.status for j in preview},
            )
        )
        rec.counts = {
            "requested": result.requested,
            "failed": result.failed,
            "skipped": result.skipped,
            "skipped_changed": result.skipped_changed,
        }
        render(
            result,
            output,
            table=lambda r: print_table(
                to_data(r.jobs),
                ["job_id", "previous_status", "status", "changed", "reason"],
                title="dry run: nothing changed" if r.dry_run else f"failed {r.failed} job(s)",
            ),
        )
