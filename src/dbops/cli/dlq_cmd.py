"""`dbops dlq`: inspect, export, purge, delete and monitor the dead-letter queue.

`dlq redrive`, `redrive-status` and `redrive-cancel` live in `dlq_redrive_cmd`, `dlq replay`
in `dlq_replay_cmd`; both are registered on this app at the end of this module.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._common import DryRunOpt, YesOpt, confirm, duration, recorder
from dbops.cli.output import (
    Output,
    OutputOpt,
    err_console,
    key_values,
    message,
    out_console,
    print_table,
    render,
)
from dbops.durations import parse_duration
from dbops.errors import ConfigError, DbopsError, ExitCode, RemoteError, UsageError
from dbops.ports import Store
from dbops.services import dlq, dlq_purge
from dbops.services.messages import MessageFilter, parse_match

app = typer.Typer(
    help="Dead-letter queue: list, show, export, purge, delete, monitor, redrive, replay.",
    no_args_is_help=True,
)

# --------------------------------------------------------------------------- shared options
QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", help="Queue name or URL (default: SQS_DLQ_URL).", show_default=False),
]
JobIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--job-id", help="Only messages for this job id (repeatable).", show_default=False
    ),
]
CustomerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--customer", help="Only messages for this customer id (repeatable).", show_default=False
    ),
]
MatchOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--match",
        metavar="KEY=VALUE",
        help="Only messages whose top-level body field KEY equals VALUE (repeatable).",
        show_default=False,
    ),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option(
        "--reason",
        help="Only messages whose _dlq_reason (or raw non-JSON body) "
        "contains this text (case-insensitive).",
        show_default=False,
    ),
]
OlderOpt = Annotated[
    str | None,
    typer.Option(
        "--older-than", help="Only messages sent longer ago than this, e.g. 2h.", show_default=False
    ),
]
NewerOpt = Annotated[
    str | None,
    typer.Option(
        "--newer-than",
        help="Only messages sent more recently than this, e.g. 30m.",
        show_default=False,
    ),
]
LeaseOpt = Annotated[
    str,
    typer.Option(
        "--lease",
        help="How long each scanned message stays invisible during the "
        "scan (must exceed the scan's duration).",
    ),
]


def queue_url(queue: str | None) -> str:
    """The DLQ to act on: `--queue` (name or URL) or SQS_DLQ_URL."""
    if queue is not None and not queue.strip():
        # An empty --queue is usually an unset shell variable: never fall back to the default.
        raise UsageError("--queue must not be empty", hint="omit it to use SQS_DLQ_URL")
    if queue:
        return _deps.queues().resolve_url(queue)
    return _deps.dlq_url()


def build_filter(
    *,
    job_ids: list[str] | None = None,
    customers: list[str] | None = None,
    matches: list[str] | None = None,
    reason: str | None = None,
    older_than: str | None = None,
    newer_than: str | None = None,
    manifest: Path | None = None,
) -> MessageFilter:
    """The shared `MessageFilter` from the filter options (usage errors when malformed)."""
    return MessageFilter(
        job_ids=[j.strip() for j in job_ids or [] if j.strip()],
        customers=[c.strip() for c in customers or [] if c.strip()],
        matches=parse_match(matches or []),
        reason=reason or None,
        older_than_seconds=duration(older_than, "--older-than"),
        newer_than_seconds=duration(newer_than, "--newer-than"),
        message_ids=dlq.read_manifest(manifest) if manifest is not None else None,
    )


def filter_arguments(flt: MessageFilter) -> dict[str, Any]:
    """Filter values for the action log (manifests summarised, not listed)."""
    data = flt.model_dump(exclude_defaults=True)
    if flt.message_ids is not None:
        data["message_ids"] = f"{len(flt.message_ids)} from manifest"
    return data


def optional_store() -> tuple[Store | None, str | None]:
    """The store when one is configured (for enrichment), else None and a warning."""
    try:
        return _deps.store(), None
    except DbopsError as exc:
        if isinstance(exc, ConfigError) and "no database configured" in exc.message:
            return None, "no database configured"
        return None, f"database unavailable ({exc.one_line()})"


@contextlib.contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr (only on a terminal); yields an update(scanned, n)."""
    if not sys.stderr.isatty():
        yield lambda _scanned, _matched: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[matched]} matched"),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total or None, matched=0)

        def update(scanned: int, matched: int) -> None:
            bar.update(
                task, completed=scanned, matched=matched, total=max(total or 0, scanned) or None
            )

        yield update


def _approximate_depth(url: str) -> int | None:
    try:
        from dbops.services.queue import read_counts

        return read_counts(queues=_deps.queues(), queue_url=url).visible
    except DbopsError:
        return None


# --------------------------------------------------------------------------- list
def _list_table(listing: dlq.DlqListing) -> None:
    items = [m.model_dump(mode="json") for m in listing.messages]
    for item in items:
        item["sent_at"] = (item["sent_at"] or "")[:19].replace("T", " ")
        item["reason"] = item["reason"] or (f"(raw) {item['preview']}" if item["preview"] else None)
    if not items:
        message(f"{listing.queue}: no messages")
        return
    styles = {"job_status": lambda v: "bold green" if v == "completed" else None}
    print_table(
        items,
        [
            "message_id",
            "job_id",
            "customer",
            "sent_at",
            "age",
            "receive_count",
            "reason",
            "size",
            "job_status",
        ],
        title=f"{listing.queue}: {len(items)} message(s)"
        + (f" (first {listing.limit})" if listing.limit_reached else ""),
        styles=styles,
    )


@app.command("list")
def list_cmd(
    queue: QueueOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10000, help="At most this many messages.")
    ] = 50,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show personal data (emails, phones) unmasked.")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Peek at DLQ messages without consuming them, with each job's current status.

    Peeking receives the messages with a 30 s visibility timeout and then makes them
    visible again, so it raises each message's receive count (ApproximateReceiveCount).
    job_status comes from the database; without one it is empty and a warning is shown.
    Any body is listed: fields dbops cannot read are null, with a note. Emails and phone
    numbers in job_id, customer, reason and preview are masked unless --reveal.

    Example:
        dbops dlq list --limit 20
        dbops dlq list -o json
    """
    url = queue_url(queue)
    store, warning = optional_store()
    listing = dlq.list_messages(
        queues=_deps.queues(),
        queue_url=url,
        limit=limit,
        store=store,
        store_warning=f"job_status unavailable: {warning}" if warning else None,
        reveal=reveal,
    )
    for text in listing.warnings:
        message(f"warning: {text}", style="yellow")
    render(
        listing.messages if output is not Output.table else listing,
        output,
        table=_list_table,
        columns=[
            "message_id",
            "job_id",
            "customer",
            "sent_at",
            "age",
            "receive_count",
            "reason",
            "size",
            "job_status",
        ],
    )


# --------------------------------------------------------------------------- show
def _show_table(detail: dlq.DlqMessageDetail) -> None:
    header = detail.model_dump(
        mode="json", exclude={"body", "message_attributes", "system_attributes"}
    )
    key_values(header, title=f"message {detail.message_id}")
    console = out_console()
    console.print("\nbody" + ("" if detail.is_json else " (not JSON, raw)") + ":", markup=False)
    text = json.dumps(detail.body, indent=2, ensure_ascii=False) if detail.is_json else detail.body
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if detail.message_attributes:
        print_table(
            [{"name": k, **v} for k, v in detail.message_attributes.items()],
            ["name", "type", "value"],
            title="message attributes",
        )
    if detail.system_attributes:
        key_values(dict(detail.system_attributes), title="system attributes")


@app.command("show")
def show(
    message_id: Annotated[str, typer.Argument(help="The SQS MessageId (from `dlq list`).")],
    queue: QueueOpt = None,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show personal data (emails, phones, names) unmasked.")
    ] = False,
    scan_limit: Annotated[
        int, typer.Option("--scan-limit", min=1, help="Peek at most this many messages.")
    ] = 1000,
    output: OutputOpt = Output.table,
) -> None:
    """Show one DLQ message: body (pretty JSON, or raw text), attributes, system attributes.

    Found by peeking (which raises receive counts). Fields that look like personal data
    (email, phone, address, names) are masked unless --reveal. Exit 4 when not found.

    Example:
        dbops dlq show 5fea7756-0ea4-451a-a703-a558b933e274
    """
    url = queue_url(queue)
    detail = dlq.show_message(
        queues=_deps.queues(),
        queue_url=url,
        message_id=message_id,
        reveal=reveal,
        scan_limit=scan_limit,
    )
    render(detail, output, table=_show_table)


# --------------------------------------------------------------------------- export
@app.command("export")
def export(
    out: Annotated[str, typer.Option("--out", help="File to write (JSON lines); '-' for stdout.")],
    queue: QueueOpt = None,
    job_id: JobIdOpt = None,
    customer: CustomerOpt = None,
    match: MatchOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Scan at most this many messages.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    reveal: Annotated[
        bool,
        typer.Option(
            "--reveal",
            help="Write bodies and attributes raw (default: personal data masked, each line "
            'marked "masked": true, which dlq replay refuses).',
        ),
    ] = False,
    lease: LeaseOpt = "5m",
    output: OutputOpt = Output.table,
) -> None:
    """Export DLQ messages (body, message attributes, system attributes) to a JSONL file.

    Non-destructive: messages are held invisible while the scan reads each one once, then
    released (visibility 0). Streamed: each batch is written as it is received. The file
    is what `dlq delete --manifest` (and redrive's --manifest) read; see docs/dlq.md.
    Personal data is masked unless --reveal: every line carries "masked": true or false,
    and only a raw (--reveal) export can restore messages.

    Example:
        dbops dlq export --out dlq.jsonl
        dbops dlq export --out acme.jsonl --customer acme --older-than 1h
    """
    flt = build_filter(
        job_ids=job_id,
        customers=customer,
        matches=match,
        reason=reason,
        older_than=older_than,
        newer_than=newer_than,
    )
    lease_seconds = parse_duration(lease, option="--lease")
    url = queue_url(queue)
    port = _deps.queues()
    with progress_bar("exporting", _approximate_depth(url)) as update:
        if out == "-":
            result = dlq.export_messages(
                queues=port,
                queue_url=url,
                stream=sys.stdout,
                message_filter=flt,
                lease=lease_seconds,
                limit=max_messages,
                progress=update,
                mask=not reveal,
            )
        else:
            result = dlq.export_to_file(
                queues=port,
                queue_url=url,
                path=Path(out).expanduser(),
                overwrite=force,
                message_filter=flt,
                lease=lease_seconds,
                limit=max_messages,
                progress=update,
                mask=not reveal,
            )
    summary = (
        f"exported {result.exported} of {result.scanned} scanned message(s) from "
        f"{result.queue}"
        + (f" to {result.path}" if result.path else "")
        + (" (personal data masked; --reveal for a raw export)" if result.masked else " (raw)")
    )
    if not result.drained and max_messages is None:
        summary += (
            f"; warning: the queue still reports {result.visible_at_end} visible "
            "message(s) it would not return (FIFO groups or a busy queue): re-run"
        )
    if out == "-" or output is Output.table:
        message(summary)
        return
    render(result, output)


# --------------------------------------------------------------------------- purge
def _purge_summary(r: dlq_purge.PurgeResult) -> None:
    if r.mode == "fast":
        message(
            f"purged about {r.purged} message(s) from {r.queue} (PurgeQueue)"
            + (f"; backup of {r.backed_up} in {r.backup}" if r.backup else " (no backup)")
        )
        return
    message(
        f"purged {r.purged} of {r.scanned} message(s) from {r.queue} (snapshot {r.snapshot})"
        + (f", {r.failed} failed" if r.failed else "")
        + (f"; backup of {r.backed_up} in {r.backup}" if r.backup else " (no backup)")
        + (
            f"; {r.left_in_place} left in place (arrived meanwhile, in flight or delayed)"
            if r.left_in_place
            else ""
        )
    )


@app.command("purge")
def purge(
    queue: QueueOpt = None,
    backup: Annotated[
        str | None,
        typer.Option(
            "--backup",
            help="Backup file (default: <data dir>/backups/<queue>-purge-<time>.jsonl).",
            show_default=False,
        ),
    ] = None,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Purge without writing a backup first.")
    ] = False,
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Use PurgeQueue after the backup scan: can delete messages that arrive "
            "meanwhile (up to 60 s) without backing them up.",
        ),
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    lease: LeaseOpt = "5m",
    output: OutputOpt = Output.table,
) -> None:
    """Delete the messages the DLQ holds now, each backed up first; new arrivals stay.

    Works on a snapshot: scans at most the depth shown in the preview (visible + in
    flight), writes every received message to the backup (fsynced; undo with `dlq replay
    BACKUP`), then deletes exactly those by receipt handle. Messages that arrive meanwhile
    are left in place and reported. --fast uses PurgeQueue instead (one per queue every
    60 s, exit 5 otherwise) and can lose messages that arrive during its window.

    Example:
        dbops dlq purge --dry-run
        dbops dlq purge --yes
    """
    if backup and no_backup:
        raise UsageError("--backup and --no-backup are mutually exclusive")
    lease_seconds = parse_duration(lease, option="--lease")
    dlq_purge.validate(lease=lease_seconds)
    url = queue_url(queue)
    port = _deps.queues()
    backup_path = (
        None
        if no_backup
        else (Path(backup).expanduser() if backup else dlq_purge.default_backup_path(url, "purge"))
    )
    if backup_path is not None and backup_path.exists():
        raise UsageError(
            f"backup file {backup_path} already exists", hint="choose another --backup"
        )
    preview = dlq_purge.purge_preview(queues=port, queue_url=url, backup=backup_path, fast=fast)
    arguments = {
        "queue": preview.queue,
        "backup": preview.backup,
        "no_backup": no_backup,
        "fast": fast,
    }
    message(
        f"{preview.queue} holds {preview.total} message(s) ({preview.visible} visible, "
        f"{preview.in_flight} in flight, {preview.delayed} delayed); "
        + (
            "PurgeQueue (--fast)"
            if fast
            else f"will scan at most {preview.snapshot} and delete exactly what it backs up"
        )
        + "; "
        + (f"backup to {backup_path}" if backup_path else "NO backup")
    )
    if preview.warning:
        message(f"warning: {preview.warning}", style="yellow")
    if dry_run:
        with recorder("dlq purge", arguments, dry_run=True) as rec:
            rec.counts = {"total": preview.total, "snapshot": preview.snapshot}
        render(preview, output, table=lambda _p: message("dry run: nothing purged"))
        return
    if (preview.total if fast else preview.snapshot) == 0:
        message(f"{preview.queue} has nothing to purge")
        render(
            dlq_purge.PurgeResult(
                queue=preview.queue,
                mode="fast" if fast else "snapshot",
                left_in_place=preview.total,
            ),
            output,
            table=lambda _r: None,
        )
        return
    confirm(
        f"purge {preview.total if fast else preview.snapshot} message(s) from {preview.queue}"
        + (" with PurgeQueue" if fast else "")
        + ("" if backup_path else " without a backup"),
        yes=yes,
        dry_run=False,
    )
    with recorder("dlq purge", arguments) as rec:
        rec.counts = {"snapshot": preview.snapshot}
        with progress_bar("backing up", preview.snapshot) as update:
            result = dlq_purge.purge(
                queues=port,
                queue_url=url,
                backup=backup_path,
                snapshot=preview.snapshot,
                fast=fast,
                lease=lease_seconds,
                progress=update,
                counts=rec.counts,
            )
        rec.counts = {
            "snapshot": result.snapshot,
            "scanned": result.scanned,
            "backed_up": result.backed_up,
            "purged": result.purged,
            "failed": result.failed,
            "left_in_place": result.left_in_place,
        }
    render(result, output, table=_purge_summary)
    if result.failed:
        raise RemoteError(
            f"{result.failed} message(s) could not be deleted (still in the queue, and in the "
            "backup): " + "; ".join(result.failures[:3])
        )


# --------------------------------------------------------------------------- delete
@app.command("delete")
def delete(
    queue: QueueOpt = None,
    job_id: JobIdOpt = None,
    customer: CustomerOpt = None,
    match: MatchOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Delete exactly the MessageIds listed in this export file.",
            show_default=False,
        ),
    ] = None,
    backup: Annotated[
        str | None,
        typer.Option(
            "--backup",
            help="Write deleted messages here first (default: <data dir>/"
            "backups/<queue>-delete-<time>.jsonl).",
            show_default=False,
        ),
    ] = None,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Do not keep a copy of deleted messages.")
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    lease: LeaseOpt = "5m",
    output: OutputOpt = Output.table,
) -> None:
    """Delete the DLQ messages matching filters (or listed in --manifest); keep the rest.

    Needs at least one filter or --manifest (use `dlq purge` to delete everything).
    Counts the matches first (a peek), asks (or --yes), then scans at most the queue's
    depth at the start: matches are written to a backup file (fsynced; undo with `dlq
    replay BACKUP`) and deleted by the receipt handles of that scan; every other message,
    and anything that arrives meanwhile, is left in place.

    Example:
        dbops dlq delete --customer acme --older-than 7d --dry-run
        dbops dlq delete --manifest reviewed.jsonl --yes
    """
    if backup and no_backup:
        raise UsageError("--backup and --no-backup are mutually exclusive")
    flt = build_filter(
        job_ids=job_id,
        customers=customer,
        matches=match,
        reason=reason,
        older_than=older_than,
        newer_than=newer_than,
        manifest=manifest,
    )
    if flt.is_empty:
        raise UsageError(
            "dlq delete needs a filter (--job-id, --customer, --match, --reason, --older-than, "
            "--newer-than) or --manifest",
            hint="to delete every message use `dbops dlq purge`",
        )
    lease_seconds = parse_duration(lease, option="--lease")
    dlq_purge.validate(lease=lease_seconds)
    url = queue_url(queue)
    port = _deps.queues()
    backup_path = (
        None
        if no_backup
        else (Path(backup).expanduser() if backup else dlq_purge.default_backup_path(url, "delete"))
    )
    if backup_path is not None and backup_path.exists():
        raise UsageError(
            f"backup file {backup_path} already exists", hint="choose another --backup"
        )
    with progress_bar("counting", _approximate_depth(url)) as update:
        preview = dlq_purge.delete_preview(
            queues=port, queue_url=url, message_filter=flt, lease=lease_seconds, progress=update
        )
    arguments = {
        "queue": preview.queue,
        **filter_arguments(flt),
        "manifest": str(manifest) if manifest else None,
        "no_backup": no_backup,
    }
    message(f"{preview.matched} of {preview.scanned} message(s) in {preview.queue} match")
    if dry_run:
        with recorder("dlq delete", arguments, dry_run=True) as rec:
            rec.counts = {"scanned": preview.scanned, "matched": preview.matched}
        render(preview, output, table=lambda _p: message("dry run: nothing deleted"))
        return
    if preview.matched == 0:
        render(
            dlq_purge.DeleteResult(
                queue=preview.queue,
                snapshot=preview.snapshot,
                scanned=preview.scanned,
                matched=0,
                deleted=0,
                failed=0,
                released=preview.released,
                drained=preview.drained,
            ),
            output,
            table=lambda _r: message("nothing to delete"),
        )
        return
    confirm(f"delete {preview.matched} message(s) from {preview.queue}", yes=yes, dry_run=False)
    with recorder("dlq delete", arguments) as rec:
        with progress_bar("deleting", preview.matched) as update:
            result = dlq_purge.delete_messages(
                queues=port,
                queue_url=url,
                message_filter=flt,
                backup=backup_path,
                lease=lease_seconds,
                progress=update,
                counts=rec.counts,
            )
        rec.counts = {
            "snapshot": result.snapshot,
            "scanned": result.scanned,
            "matched": result.matched,
            "deleted": result.deleted,
            "failed": result.failed,
        }
    render(
        result,
        output,
        table=lambda r: message(
            f"deleted {r.deleted} of {r.matched} matching message(s) from {r.queue}"
            + (f", {r.failed} failed" if r.failed else "")
            + (f"; copies in {r.backup}" if r.backup else "")
        ),
    )
    if result.failed:
        raise RemoteError(
            f"{result.failed} message(s) could not be deleted: " + "; ".join(result.failures[:3])
        )


# --------------------------------------------------------------------------- monitor
def _monitor_line(result: dlq.MonitorResult) -> None:
    state = "ALERT" if result.alerting else "ok"
    line = f"{state}: {result.queue} depth {result.depth} (threshold {result.threshold})"
    if result.notify:
        if result.notified:
            line += f"; notified {result.notify}"
        elif result.notify_error:
            line += f"; {result.notify} notification FAILED"
        elif result.notify_skipped:
            line += f"; not notified: {result.notify_skipped}"
    out_console().print(line, markup=False, highlight=False)


def _monitor_once(
    *,
    url: str,
    threshold: int,
    notifier: Any,
    store: Store | None,
    warning: str | None,
    output: Output,
) -> dlq.MonitorResult:
    result = dlq.monitor(
        queues=_deps.queues(),
        queue_url=url,
        threshold=threshold,
        notifier=notifier,
        channel="slack" if notifier is not None else None,
        store=store,
        store_warning=warning,
    )
    for text in result.warnings:
        message(f"warning: {text}", style="yellow")
    render(result, output, table=_monitor_line)
    return result


@app.command("monitor")
def monitor(
    queue: QueueOpt = None,
    threshold: Annotated[
        int | None,
        typer.Option(
            "--threshold",
            min=1,
            help="Alert at this depth or more (default: DLQ_ALERT_THRESHOLD, else 1).",
            show_default=False,
        ),
    ] = None,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            help="Send an alert: 'slack' (webhook from SLACK_WEBHOOK_URL).",
            show_default=False,
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Keep checking every --interval.")] = False,
    interval: Annotated[
        str, typer.Option("--interval", help="Time between checks with --watch.")
    ] = "1m",
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, help="With --watch, stop after this many checks."),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Check the DLQ depth: exit 1 when depth >= threshold, 0 otherwise (for cron and CI).

    With --notify slack, posts a Block Kit alert (depth, first 5 messages, next commands)
    when alerting, and again only when the depth has grown since the last alert (state in
    the database; without one, every alerting check notifies). A webhook failure exits 5
    after printing the check. With --watch, checks every --interval until Ctrl-C (exit
    130) or --count checks; the exit code is then the last check's.

    Example:
        dbops dlq monitor --threshold 10 -o json
        dbops dlq monitor --notify slack --watch --interval 5m
    """
    if notify is not None and notify.lower() != "slack":
        raise UsageError(f"invalid --notify {notify!r}: the only channel is 'slack'")
    seconds = parse_duration(interval, option="--interval")
    if count is not None and not watch:
        raise UsageError("--count needs --watch")
    limit = threshold if threshold is not None else _deps.settings().dlq_alert_threshold
    notifier = _deps.slack_notifier() if notify else None
    url = queue_url(queue)
    store: Store | None = None
    warning: str | None = None
    if notifier is not None:
        store, warning = optional_store()
    checks = 0
    result: dlq.MonitorResult | None = None
    try:
        while True:
            result = _monitor_once(
                url=url,
                threshold=limit,
                notifier=notifier,
                store=store,
                warning=warning,
                output=output,
            )
            checks += 1
            if not watch:
                break
            if result.notify_error:
                message(f"warning: {result.notify_error}", style="yellow")
            if count is not None and checks >= count:
                break
            time.sleep(seconds)
    except KeyboardInterrupt:
        message(f"stopped after {checks} check(s)")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    assert result is not None
    if result.notify_error:
        raise RemoteError(f"check done but the alert was not delivered: {result.notify_error}")
    if result.alerting:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- redrive
from dbops.cli import dlq_redrive_cmd  # noqa: E402  (registers onto `app`, defined above)

dlq_redrive_cmd.register(app)

# --------------------------------------------------------------------------- replay
from dbops.cli import dlq_replay_cmd  # noqa: E402  (registers onto `app`, defined above)

dlq_replay_cmd.register(app)
