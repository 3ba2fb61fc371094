"""`dbops jobs recover|requeue`: the commands that re-queue jobs, registered onto the `jobs`
app (cli/main.py, PARTS; `retry` and `fail` are in jobs_bulk_cmd.py). Each follows the
destructive flow: service preview -> render it -> confirm -> one action-log row around the
service call -> render the result."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, duration, is_interactive, recorder
from dbops.cli.jobs_cmd import LimitOpt, _stale_default, _with_age
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

R = TypeVar("R")

GroupByOpt = Annotated[
    jobs.GroupBy,
    typer.Option(
        "--group-by",
        help="FIFO main queue: MessageGroupId per job (default) or per customer.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add `recover` and `requeue` to the `jobs` app (`retry` and `fail`: jobs_bulk_cmd)."""
    app.command("recover")(recover)
    app.command("requeue")(requeue)


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


def _send(expected: int, run: Callable[[jobs.Progress | None], R]) -> R:
    """Run an outbox use case under a progress bar. A failure's partial result (its
    `counts()`) goes to the action log through the recorder."""
    with _progress(expected, "sending") as progress:
        return run(progress)


def _recover_table(result: Any) -> None:
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


# --------------------------------------------------------------------------- recover
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
    preview = jobs.recover_preview(
        store=_deps.store(), older_than_seconds=seconds, limit=limit, max_recoveries=max_recoveries
    )
    queue_url = None if dry_run else _deps.main_queue_url()
    if _show_preview(output):
        _recover_preview(preview)
    if preview.nothing_to_do:
        dry = jobs.recover_dry_run(preview).model_copy(update={"dry_run": dry_run})
        render(dry, output, table=_recover_table)
        return
    confirm(preview.action(), yes=yes, dry_run=dry_run)
    arguments = {
        "older_than_seconds": seconds,
        "limit": limit,
        "max_recoveries": max_recoveries,
        "chunk_size": chunk_size,
        "group_by": group_by,
        "queue_url": queue_url,
    }
    with recorder("jobs recover", arguments, dry_run=dry_run) as rec:
        if queue_url is None:
            result = jobs.recover_dry_run(preview)
        else:
            result = _send(preview.to_send, _recover_run(preview, queue_url, arguments))
        result.more_stale = result.more_stale or preview.more_stale
        rec.counts = result.counts()
        render(result, output, table=_recover_table)
        _raise_on_failed_sends(result.failed_sends, result.jobs, "dbops jobs recover")


def _recover_run(
    preview: jobs.RecoverPreview, queue_url: str, arguments: dict[str, Any]
) -> Callable[[jobs.Progress | None], jobs.RecoverResult]:
    def run(progress: jobs.Progress | None) -> jobs.RecoverResult:
        return jobs.recover(
            store=_deps.store(),
            queues=_deps.queues(),
            queue_url=queue_url,
            operator=_deps.operator(),
            older_than_seconds=preview.older_than_seconds,
            limit=preview.limit,
            claim_at_most=preview.would_claim,  # never more than previewed and confirmed
            max_recoveries=preview.max_recoveries,
            chunk_size=arguments["chunk_size"],
            progress=progress,
            group_by=arguments["group_by"],
            checkpoint=checkpoint_from_env(),
        )

    return run


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
    if preview.nothing_to_do:
        lines.append("nothing to recover")
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


# --------------------------------------------------------------------------- requeue
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
    orphan_seconds = _orphan_seconds(bool(job_ids), orphans, older_than)
    ids = jobs.resolve_job_ids(job_ids, store=_deps.store()) if job_ids else []
    preview = jobs.requeue_preview(
        store=_deps.store(), job_ids=ids, orphans_older_than_seconds=orphan_seconds, limit=limit
    )
    queue_url = None if dry_run else _deps.main_queue_url()
    if _show_preview(output):
        _requeue_preview(preview)
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
        if queue_url is None:
            result = jobs.requeue_dry_run(preview)
        else:
            expected = preview.would_requeue + preview.outbox.unsent
            result = _send(expected, _requeue_run(preview, queue_url, arguments))
        rec.counts = result.counts()
        render(result, output, table=_recover_table)
        _raise_on_failed_sends(result.failed_sends, result.jobs, "dbops jobs recover")


def _orphan_seconds(has_ids: bool, orphans: bool, older_than: str | None) -> int | None:
    """`--orphans`' threshold in seconds (None: ids were given); usage errors for a wrong
    combination."""
    if orphans == has_ids:
        raise UsageError("give job ids or --orphans (not both)")
    if older_than is not None and not orphans:
        raise UsageError("--older-than only applies with --orphans")
    if not orphans:
        return None
    return duration(older_than, "--older-than") or _deps.settings().audit.orphaned_minutes * 60


def _requeue_preview(preview: jobs.RequeuePreview) -> None:
    unsent = preview.outbox.unsent
    message(
        f"{preview.would_requeue} job(s) to re-queue, {preview.would_skip} to skip"
        + (f"; {unsent} unsent outbox message(s) sent first" if unsent else "")
    )
    if preview.jobs:
        _preview_table(
            to_data(preview.jobs[:10]),
            ["id", "customer_id", "status", "updated_at", "recoveries", "unsent"],
            title=f"first {min(10, len(preview.jobs))} of {len(preview.jobs)}",
        )


def _requeue_run(
    preview: jobs.RequeuePreview, queue_url: str, arguments: dict[str, Any]
) -> Callable[[jobs.Progress | None], jobs.RequeueResult]:
    def run(progress: jobs.Progress | None) -> jobs.RequeueResult:
        return jobs.requeue(
            store=_deps.store(),
            queues=_deps.queues(),
            queue_url=queue_url,
            operator=_deps.operator(),
            job_ids=[str(j.id) for j in preview.jobs],
            orphans_older_than_seconds=arguments["older_than_seconds"],
            progress=progress,
            expected={str(j.id): j.status for j in preview.jobs},
            force=arguments["force"],
            group_by=arguments["group_by"],
            checkpoint=checkpoint_from_env(),
        )

    return run
