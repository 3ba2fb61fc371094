"""`dbops jobs retry|fail`: act on jobs given by id or selected by a filter (--status,
--customer, --error-like, --since, --until, --limit), registered onto the `jobs` app
(cli/main.py, PARTS). Destructive flow: the preview shows the count and a sample, then
confirm, one action-log row (the ids or the filter, and the counts), the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, duration, recorder
from dbops.cli.jobs_actions_cmd import (
    GroupByOpt,
    _preview_table,
    _raise_on_failed_sends,
    _recover_table,
    _send,
    _show_preview,
)
from dbops.cli.jobs_cmd import LimitOpt
from dbops.cli.output import OutputOpt, message, print_table, render, to_data
from dbops.errors import UsageError
from dbops.services import jobs
from dbops.services.redact import mask_optional, redact_text

JobIdsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Job ids or prefixes; or select jobs with the filter options.", show_default=False
    ),
]
CustomerOpt = Annotated[str | None, typer.Option(help="Only this customer_id.")]
ErrorLikeOpt = Annotated[
    str | None,
    typer.Option(
        "--error-like",
        metavar="TEXT",
        help="Only jobs whose error_message contains TEXT (case-insensitive).",
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(help="Last state change (updated_at) within this long, e.g. 6h."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(help="Last state change (updated_at) longer ago than this, e.g. 10m."),
]
ChunkOpt = Annotated[int, typer.Option(min=10, max=10_000, help="Jobs changed per database call.")]


def register(app: typer.Typer) -> None:
    """Add `retry` and `fail` to the `jobs` app."""
    app.command("retry")(retry)
    app.command("fail")(fail)


def _filter(
    status: str | None,
    customer: str | None,
    error_like: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> jobs.JobFilter | None:
    return jobs.job_filter(
        status=status,
        customer=customer,
        error_like=error_like,
        since_seconds=duration(since, "--since"),
        until_seconds=duration(until, "--until"),
        limit=limit,
    )


def _describe(preview: jobs.BulkPreview) -> str:
    if preview.filter is None:
        return f"{len(preview.jobs)} job(s) given"
    given = preview.filter.model_dump(exclude_none=True, exclude={"limit"})
    shown = ", ".join(f"{k}={v}" for k, v in given.items())
    more = "+" if preview.more_matched else ""
    return f"{len(preview.jobs)}{more} job(s) match ({shown}; limit {preview.filter.limit})"


def _bulk_preview(preview: jobs.BulkPreview, verb: str, planned: Any = None) -> None:
    """The count line and a sample (the first 10; error messages masked and shortened)."""
    unsent = preview.outbox.unsent
    message(
        f"{_describe(preview)}: {preview.would_act} to {verb}, {preview.would_skip} to skip"
        + (f"; {unsent} unsent outbox message(s) sent first" if unsent else "")
    )
    if not preview.jobs:
        return
    title = f"sample: first {min(10, len(preview.jobs))} of {len(preview.jobs)}"
    if planned is not None:  # fail: what happens to each job
        columns = ["job_id", "previous_status", "status", "reason"]
        _preview_table(to_data(planned.jobs[:10]), columns, title=title)
        return
    sample = to_data(preview.jobs[:10])
    for row in sample:
        error = mask_optional(row.get("error_message")) or ""
        row["error_message"] = error if len(error) <= 60 else error[:59] + "…"
    columns = ["id", "customer_id", "status", "updated_at", "recoveries", "error_message"]
    _preview_table(sample, columns, title=title)


# --------------------------------------------------------------------------- retry
def retry(
    job_ids: JobIdsArg = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only jobs in this status: failed (retry re-queues failed jobs only; "
            "checked against the jobs table's status check)."
        ),
    ] = None,
    customer: CustomerOpt = None,
    error_like: ErrorLikeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = jobs.BULK_LIMIT,
    chunk_size: ChunkOpt = jobs.RETRY_CHUNK,
    group_by: GroupByOpt = "job",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Re-queue failed jobs, by id or by filter, through the same outbox as `recover`.

    `jobs requeue ID...` for failed jobs only, plus selection by filter: the jobs move back
    to pending with one message each, crash-safe (run id, lease, outbox: a killed run is
    finished by re-running). By filter: one database call per chunk (2,000 jobs) plus three
    per run (preview, finish, action log), one SQS call per 10 jobs. A job whose status
    changed after the preview is skipped (`skipped_changed`).

    Example:
        dbops jobs retry --customer acme --error-like timeout --since 6h --dry-run
        dbops jobs retry --status failed --since 1h --limit 5000 --yes -o json
    """
    filt = _filter(status, customer, error_like, since, until, limit)
    ids = jobs.resolve_job_ids(job_ids, store=_deps.store()) if job_ids else None
    preview = jobs.retry_preview(store=_deps.store(), job_ids=ids, filter=filt)
    queue_url = None if dry_run else _deps.main_queue_url()
    if _show_preview(output):
        _bulk_preview(preview, "retry")
    if not preview.jobs:
        nothing = jobs.retry_dry_run(preview).model_copy(update={"dry_run": dry_run})
        render(nothing, output, table=_recover_table)
        return
    confirm(f"retry {preview.would_act} failed job(s)", yes=yes, dry_run=dry_run)
    arguments = {
        "job_ids": ids or [],
        "filter": preview.filter.model_dump() if preview.filter else None,
        "chunk_size": chunk_size,
        "group_by": group_by,
        "queue_url": queue_url,
    }
    with recorder("jobs retry", arguments, dry_run=dry_run) as rec:
        if queue_url is None:
            result = jobs.retry_dry_run(preview)
        else:
            expected = preview.would_act + preview.outbox.unsent
            result = _send(expected, _retry_run(preview, queue_url, arguments))
        rec.counts = result.counts()
        render(result, output, table=_recover_table)
        _raise_on_failed_sends(result.failed_sends, result.jobs, "dbops jobs recover")


def _retry_run(
    preview: jobs.BulkPreview, queue_url: str, arguments: dict[str, Any]
) -> Callable[[jobs.Progress | None], jobs.RetryResult]:
    def run(progress: jobs.Progress | None) -> jobs.RetryResult:
        return jobs.retry(
            store=_deps.store(),
            queues=_deps.queues(),
            queue_url=queue_url,
            operator=_deps.operator(),
            preview=preview,
            chunk_size=arguments["chunk_size"],
            progress=progress,
            group_by=arguments["group_by"],
            checkpoint=checkpoint_from_env(),
        )

    return run


# --------------------------------------------------------------------------- fail
def fail(
    job_ids: JobIdsArg = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (stored in error_message and the history).")
    ] = ...,  # type: ignore[assignment]
    status: Annotated[
        str | None,
        typer.Option(
            help="Only jobs in this status: pending or in_progress (default: both; checked "
            "against the jobs table's status check)."
        ),
    ] = None,
    customer: CustomerOpt = None,
    error_like: ErrorLikeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = jobs.BULK_LIMIT,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Mark jobs failed with a reason (pending jobs, or in-progress ones without sign of life).

    By id, or by filter (one database call per 1,000 jobs). A job whose status changed
    after the preview is skipped (`skipped_changed`).

    Example:
        dbops jobs fail 6f1c2a7e-0b7d-4c1e-9a51-1d2e3f405060 --reason "bad input file" --yes
        dbops jobs fail --status pending --customer acme --reason "account closed" --dry-run
    """
    filt = _filter(status, customer, error_like, since, until, limit)
    ids = jobs.resolve_job_ids(job_ids, store=_deps.store()) if job_ids else None
    reason = redact_text(" ".join(reason.split()))
    if not reason:
        raise UsageError("--reason must not be empty")
    store = _deps.store()
    preview = jobs.fail_bulk_preview(store=store, job_ids=ids, filter=filt)
    planned = jobs.fail_bulk_dry_run(preview, reason)
    if _show_preview(output):
        _bulk_preview(preview, "fail", planned)
    confirm(f"fail {planned.failed} job(s)", yes=yes, dry_run=dry_run)
    arguments: dict[str, Any] = {"job_ids": ids, "reason": reason}
    if preview.filter is not None:
        arguments = {"filter": preview.filter.model_dump(), "reason": reason}
    with recorder("jobs fail", arguments, dry_run=dry_run) as rec:
        result = (
            planned
            if dry_run
            else jobs.fail_bulk(
                store=store, preview=preview, reason=reason, operator=_deps.operator()
            )
        )
        rec.counts = result.counts()
        render(
            result,
            output,
            table=lambda r: print_table(
                to_data(r.jobs),
                ["job_id", "previous_status", "status", "changed", "reason"],
                title="dry run: nothing changed" if r.dry_run else f"failed {r.failed} job(s)",
            ),
        )
