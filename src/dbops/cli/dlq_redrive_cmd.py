"""`dbops dlq redrive`, `dbops dlq redrive-status`, `dbops dlq redrive-cancel`.

Registered on the `dlq` app by `dlq_cmd.py` through `register(app)`; the filter options
and their builder are the ones every dlq command shares (`dlq_cmd`). Import this module
through `dbops.cli.dlq_cmd` (dlq_cmd imports it at its end, after the shared options).

`--lease DURATION` (hidden) shortens the visibility lease on scanned messages (default
5m): for tests, which must see the messages a killed process held come back soon, and for
slow networks, which may want a longer one. Tests pause a redrive at a named point
(`after_settle`, `after_receive`, `after_send`, `mid_batch`, `after_delete`) through the
one test seam, `dbops.cli._checkpoint`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, is_interactive, recorder
from dbops.cli.dlq_cmd import (
    CustomerOpt,
    JobIdOpt,
    MatchOpt,
    NewerOpt,
    OlderOpt,
    ReasonOpt,
    build_filter,
    queue_url,
)
from dbops.cli.output import (
    Output,
    OutputOpt,
    err_console,
    key_values,
    message,
    partial_rendered,
    print_table,
    render,
)
from dbops.durations import format_duration, parse_duration
from dbops.errors import RefusedError
from dbops.names import queue_name
from dbops.services import redrive as svc


class Method(StrEnum):
    copy = "copy"
    native = "native"


QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", "-q", help="DLQ name or URL (default: SQS_DLQ_URL)."),
]
# The options of `redrive` beyond the shared filter ones (`dlq_cmd`).
ToOpt = Annotated[
    str | None,
    typer.Option("--to", help="Target queue (default: the DLQ's single source queue)."),
]
SkipCompletedOpt = Annotated[
    bool,
    typer.Option(
        "--skip-completed-jobs", help="Leave messages whose job already completed (database)."
    ),
]
MaxOpt = Annotated[int | None, typer.Option("--max", help="Move at most N messages.")]
RateOpt = Annotated[
    float | None, typer.Option("--rate", help="At most this many messages per second.")
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Parallel receive/send/delete loops.")]
ManifestOpt = Annotated[
    Path | None,
    typer.Option("--manifest", help="Redrive exactly the MessageIds in this export file."),
]
CanaryOpt = Annotated[
    int | None,
    typer.Option("--canary", help="Move N first, wait --canary-wait, stop if they return."),
]
CanaryWaitOpt = Annotated[
    str, typer.Option("--canary-wait", help="How long to watch the canary (e.g. 2m).")
]
MethodOpt = Annotated[
    Method,
    typer.Option(
        "--method",
        help="copy (filtered, crash-safe) or native (AWS move task).",
        case_sensitive=False,
    ),
]
LeaseOpt = Annotated[
    str | None,
    typer.Option(
        "--lease",
        hidden=True,
        help="Visibility lease on scanned messages (default 5m; tests, slow networks).",
    ),
]


def _journal_dir() -> Path:
    from dbops.services.redrive.journal import default_directory

    return default_directory()


# --------------------------------------------------------------------------- rendering
def _render_preview(preview: svc.RedrivePreview, *, what: str) -> None:
    message(
        f"Redrive ({preview.method}) from {queue_name(preview.source)} "
        f"to {queue_name(preview.target)}"
        f"{' (FIFO)' if preview.target_fifo else ''}: {preview.visible} visible in the DLQ, "
        f"{preview.in_flight} in flight; {what}."
    )
    pending = preview.journal
    if pending is not None and pending.running_pid is not None:
        message(
            f"Another redrive of {queue_name(preview.source)} is running"
            + (f" (pid {pending.running_pid})" if pending.running_pid > 0 else "")
            + ": this one will be refused until it ends."
        )
    elif pending is not None:
        message(
            "An earlier redrive of this DLQ did not finish"
            + (f" (started {pending.earlier_run_started})" if pending.earlier_run_started else "")
            + f": first, {pending.sent} message(s) it already sent will be deleted from the DLQ "
            f"(not sent again) and {pending.held} it held will be released."
        )
    scan = preview.scan
    if scan is None:
        return
    message(
        f"Scan: {scan.matched} of {scan.scanned} messages match"
        + (f" ({scan.skipped_completed} skipped: job completed)" if scan.skipped_completed else "")
        + (f"; {len(scan.not_found)} manifest ids not in the DLQ" if scan.not_found else "")
        + "."
    )
    if scan.sample:
        from rich.table import Table

        grid = Table(title="sample", title_justify="left", header_style="bold")
        for column in ("message_id", "job_id", "customer_id", "reason", "age", "size"):
            grid.add_column(column, overflow="fold")
        for row in scan.sample:
            grid.add_row(
                row.message_id,
                row.job_id or "",
                row.customer_id or "",
                row.reason or "",
                format_duration(row.age_seconds),
                str(row.size),
            )
        err_console().print(grid)


def _summary_table(result: svc.RedriveResult) -> None:
    data: dict[str, Any] = {
        "method": result.method,
        "dry_run": result.dry_run,
        "source": queue_name(result.source),
        "target": queue_name(result.target),
        "scanned": result.scanned,
        "matched": result.matched,
        "moved": result.moved,
        "failed": result.failed,
        "released": result.released,
        "stopped": result.stopped,
        "duration": format_duration(result.duration_seconds)
        if result.duration_seconds >= 1
        else f"{result.duration_seconds:.2f}s",
    }
    if result.not_sent:
        data["not_sent"] = result.not_sent
    if result.settled is not None:
        s = result.settled
        data["settled"] = (
            f"{s.deleted_already_sent} already sent (deleted), {s.released} released, "
            f"{s.expired} expired"
        )
    if result.skipped_completed:
        data["skipped_completed"] = result.skipped_completed
    if result.duplicates_possible:
        data["duplicates_possible"] = result.duplicates_possible
    if result.task_handle:
        data["task_handle"] = result.task_handle
        data["task_status"] = result.task_status
    if result.canary is not None:
        data["canary"] = f"{result.canary.moved} moved, " + (
            "passed" if result.canary.passed else f"{len(result.canary.came_back)} came back"
        )
    key_values(data, title="dlq redrive")
    if result.failures:
        print_table(
            [f.model_dump() for f in result.failures],
            ["message_id", "job_id", "stage", "reason"],
            title="not moved",
        )


def _warnings(result: svc.RedriveResult) -> None:
    s = result.settled
    if s is not None and (
        s.deleted_already_sent or s.released or s.expired or s.sent_copies_deleted
    ):
        message(
            "Settled an earlier redrive that did not finish: "
            f"{s.deleted_already_sent} message(s) it had sent were deleted from the DLQ "
            f"(not sent again), {s.released} it held were released and redriven"
            + (f"; {s.expired} receipt handle(s) had expired (not an error)" if s.expired else "")
            + (
                f"; {s.sent_copies_deleted} it had sent were found again and deleted, "
                "not sent twice"
                if s.sent_copies_deleted
                else ""
            )
            + "."
        )
    if result.not_sent:
        message(f"{result.not_sent} matching message(s) were not sent: they stay in the DLQ.")
    if result.system_attributes_dropped:
        message(
            f"{result.system_attributes_dropped} message(s) were sent without their "
            "AWSTraceHeader: the target refused it."
        )
    if result.failed and not result.dry_run:
        message(
            f"{result.failed} message(s) not moved: they stay in the DLQ "
            "(see `failures`; fix the cause and re-run)."
        )
    if result.duplicates_possible:
        message(
            f"{result.duplicates_possible} message(s) were sent but could not be deleted from "
            "the DLQ: they may be processed twice."
        )
    if result.not_found:
        message(f"{len(result.not_found)} manifest message id(s) were not found in the DLQ.")
    if result.stopped == "unsettled":
        message(
            f"The DLQ still reports {result.remaining_visible} visible message(s) that could "
            "not be received (FIFO groups held, or counts lagging): re-run to pick them up."
        )


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[svc.ProgressFn | None]:
    from dbops.cli._progress import progress_bar

    with progress_bar("redrive", enabled=enabled, elapsed=True, transient=False) as bar:
        if bar is None:
            yield None
            return

        def update(p: svc.RedriveProgress) -> None:
            bar(
                p.scanned if p.scanned else p.moved,
                total=p.total,
                description=f"moved {p.moved}, failed {p.failed}; scanned",
            )

        yield update


# --------------------------------------------------------------------------- commands
def redrive(
    to: ToOpt = None,
    job_id: JobIdOpt = None,
    customer: CustomerOpt = None,
    match: MatchOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    skip_completed_jobs: SkipCompletedOpt = False,
    max_messages: MaxOpt = None,
    rate: RateOpt = None,
    workers: WorkersOpt = 1,
    manifest: ManifestOpt = None,
    canary: CanaryOpt = None,
    canary_wait: CanaryWaitOpt = "60s",
    method: MethodOpt = Method.copy,
    lease: LeaseOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    queue: QueueOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Move DLQ messages back to a work queue: send first, delete only what was sent.

    Matching messages are copied (body and attributes kept, FIFO group ids kept) and
    deleted from the DLQ only once the send succeeded; others stay invisible until the scan
    ends and are then released. A crash never loses a message (at worst, one is
    duplicated). Ctrl-C stops after the batch in flight (exit 130).

    Example:
        dbops dlq redrive --customer acme --older-than 1h --dry-run
        dbops dlq redrive --canary 5 --canary-wait 2m --rate 50 --yes -o json
    """
    flt = build_filter(
        job_ids=job_id,
        customers=customer,
        matches=match,
        reason=reason,
        older_than=older_than,
        newer_than=newer_than,
    )
    request = svc.RedriveRequest(
        method=method.value,
        to=to,
        message_filter=flt,
        manifest=manifest,
        skip_completed_jobs=skip_completed_jobs,
        max_messages=max_messages,
        rate=rate,
        workers=workers,
        canary=canary,
        canary_wait_seconds=parse_duration(canary_wait, option="--canary-wait", allow_zero=True),
        lease_seconds=parse_duration(lease, option="--lease") if lease else svc.LEASE_SECONDS,
        dry_run=dry_run,
    )
    plan = svc.plan_redrive(
        queues=_deps.queues(),
        dlq_url=queue_url(queue),
        request=request,
        store=_deps.store() if skip_completed_jobs else None,
        scan_if_filtered=not yes and is_interactive(),
        journal_dir=_journal_dir(),
    )
    _preview_and_confirm(plan, canary_wait=canary_wait, yes=yes)
    options: dict[str, Any] = dict(job_id=job_id, customer=customer, match=match, reason=reason)
    options |= dict(older_than=older_than, newer_than=newer_than, manifest=manifest)
    arguments = _log_arguments(plan, options=options | {"canary_wait": canary_wait})
    table = output is Output.table
    with recorder("dlq redrive", arguments, dry_run=dry_run) as rec:
        with partial_rendered(output, svc.RedriveResult), _progress_bar(table) as bar:
            run = svc.dry_run if dry_run else svc.execute
            result = run(plan, progress=bar, checkpoint=checkpoint_from_env())
        rec.counts = result.counts()
        render(result, output, table=_summary_table)
        _outcome(result)


def _preview_and_confirm(plan: svc.RedrivePlan, *, canary_wait: str, yes: bool) -> None:
    """Render the plan's preview, then ask (or --yes); a dry run needs no confirmation."""
    request = plan.request
    if plan.preview.scan is not None and plan.preview.scan.interrupted:
        raise KeyboardInterrupt  # Ctrl-C during the preview scan: everything was released
    _render_preview(plan.preview, what=_describe(request, canary_wait))
    noun = (
        "matching messages"
        if request.filtered and plan.preview.scan is None
        else f"{plan.count} messages"
    )
    source, target = queue_name(plan.dlq_url), queue_name(plan.target_url)
    confirm(f"redrive {noun} from {source} to {target}", yes=yes, dry_run=request.dry_run)


def _log_arguments(plan: svc.RedrivePlan, *, options: dict[str, Any]) -> dict[str, Any]:
    """The action-log arguments: the options as given, the numbers as checked."""
    r = plan.request
    flt = r.message_filter
    manifest = options["manifest"]
    return {
        "queue": queue_name(plan.dlq_url),
        "to": queue_name(plan.target_url),
        "method": r.method,
        **{k: list(options[k] or []) for k in ("job_id", "customer", "match")},
        **{k: options[k] for k in ("reason", "older_than", "newer_than")},
        "skip_completed_jobs": r.skip_completed_jobs,
        "max": r.max_messages,
        "rate": r.rate,
        "workers": r.workers,
        "manifest": str(manifest) if manifest else None,
        "manifest_ids": len(flt.message_ids) if flt.message_ids is not None else None,
        "canary": r.canary,
        "canary_wait": options["canary_wait"] if r.canary else None,
    }


def _outcome(result: svc.RedriveResult) -> None:
    """Warnings, then exit 130 when interrupted or 6 when the canary failed."""
    _warnings(result)
    if result.interrupted:
        message(
            f"Interrupted: moved {result.moved}, released {result.released}; "
            "nothing in flight was lost."
        )
        raise KeyboardInterrupt
    if result.canary is not None and not result.canary.passed:
        raise RefusedError(
            f"canary failed: {len(result.canary.came_back)} of {result.canary.moved} "
            f"redriven message(s) came back to {queue_name(result.source)} within "
            f"{format_duration(result.canary.wait_seconds)}; stopped, the rest stay in the DLQ",
            hint="inspect with `dbops dlq list` before retrying",
        )


def _describe(request: svc.RedriveRequest, canary_wait: str) -> str:
    flt = request.message_filter
    skip_completed = request.skip_completed_jobs
    max_messages, rate, workers, canary = (
        request.max_messages,
        request.rate,
        request.workers,
        request.canary,
    )
    parts: list[str] = []
    if flt.job_ids:
        parts.append(f"job ids {', '.join(flt.job_ids[:5])}")
    if flt.customers:
        parts.append(f"customers {', '.join(flt.customers[:5])}")
    parts.extend(f"{k}={v}" for k, v in flt.matches.items())
    if flt.reason:
        parts.append(f"reason contains {flt.reason!r}")
    if flt.older_than_seconds:
        parts.append(f"older than {format_duration(flt.older_than_seconds)}")
    if flt.newer_than_seconds:
        parts.append(f"newer than {format_duration(flt.newer_than_seconds)}")
    if flt.message_ids is not None:
        parts.append(f"{len(flt.message_ids)} manifest ids")
    if skip_completed:
        parts.append("skipping completed jobs")
    text = ("messages matching " + "; ".join(parts)) if parts else "all messages"
    extras = []
    if max_messages:
        extras.append(f"at most {max_messages}")
    if rate:
        extras.append(f"{rate:g}/s")
    if workers > 1:
        extras.append(f"{workers} workers")
    if canary:
        extras.append(f"canary {canary}, wait {canary_wait}")
    return text + (f" ({', '.join(extras)})" if extras else "")


def redrive_status(queue: QueueOpt = None, output: OutputOpt = Output.table) -> None:
    """Show the DLQ's recent AWS message move tasks (native redrives) and their progress.

    Example:
        dbops dlq redrive-status -o json
    """
    queues = _deps.queues()
    tasks = svc.list_move_tasks(queues=queues, dlq_url=queue_url(queue))
    render(
        tasks,
        output,
        columns=["task_handle", "status", "moved", "to_move", "rate", "failure_reason"],
        empty="no message move tasks for this queue",
    )


def redrive_cancel(
    task_handle: Annotated[
        str | None,
        typer.Argument(help="Task to cancel (default: the DLQ's running move task)."),
    ] = None,
    queue: QueueOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Cancel a running native redrive (AWS message move task); moved messages stay moved.

    Example:
        dbops dlq redrive-cancel --yes
    """
    queues = _deps.queues()
    dlq_url = queue_url(queue)
    plan = svc.cancel_plan(queues=queues, dlq_url=dlq_url, task_handle=task_handle)
    message(f"Cancel message move task on {queue_name(dlq_url)}: {plan.task_handle}")
    confirm(f"cancel the move task on {queue_name(dlq_url)}", yes=yes, dry_run=dry_run)
    arguments = {"queue": queue_name(dlq_url), "task_handle": plan.task_handle}
    with recorder("dlq redrive-cancel", arguments, dry_run=dry_run) as rec:
        result = (
            plan
            if dry_run
            else svc.cancel_move_task(queues=queues, dlq_url=dlq_url, task_handle=plan.task_handle)
        )
        rec.counts = {"moved_before_cancel": result.moved_before_cancel}
    render(result, output)


def register(app: typer.Typer) -> None:
    """Add `redrive`, `redrive-status` and `redrive-cancel` to the `dlq` app."""
    app.command("redrive")(redrive)
    app.command("redrive-status")(redrive_status)
    app.command("redrive-cancel")(redrive_cancel)
