"""`dbops dlq`: the group, its shared options and helpers, and `list`, `show`, `export`.

The other `dlq` commands live in their own modules, each with `register(app)`:
`dlq_stats_cmd` (stats), `dlq_purge_cmd` (purge, delete), `dlq_monitor_cmd` (monitor),
`dlq_redrive_cmd` (redrive, redrive-status, redrive-cancel) and `dlq_replay_cmd` (replay).
`cli/main.py`'s loader registers them on this app, in that order, so this module imports
none of them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import duration
from dbops.cli.output import (
    Output,
    OutputOpt,
    key_values,
    message,
    out_console,
    print_table,
    render,
    whole_stdout,
)
from dbops.durations import parse_duration
from dbops.errors import ConfigError, DbopsError, UsageError
from dbops.ports import Store
from dbops.services import dlq
from dbops.services.messages import MessageFilter, parse_match

app = typer.Typer(
    help="Dead-letter queue: list, show, stats, export, purge, delete, monitor, redrive, replay.",
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
    """The shared `MessageFilter` from the filter options (usage errors when malformed).

    An empty or blank value is a usage error, never "no filter": it is usually an unset
    shell variable, and a filter that silently matched everything could redrive, purge or
    delete the whole queue.
    """
    for option, values in (
        ("--job-id", job_ids or []),
        ("--customer", customers or []),
        ("--match", matches or []),
        ("--reason", [] if reason is None else [reason]),
        ("--older-than", [] if older_than is None else [older_than]),
        ("--newer-than", [] if newer_than is None else [newer_than]),
    ):
        if any(not v.strip() for v in values):
            raise UsageError(
                f"{option} must not be empty", hint=f"omit {option} to leave it out of the filter"
            )
    return MessageFilter(
        job_ids=[j.strip() for j in job_ids or []],
        customers=[c.strip() for c in customers or []],
        matches=parse_match(matches or []),
        reason=reason,
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
    """The shared progress bar (cli/_progress.py) for scans; yields an update(scanned, n)."""
    from dbops.cli._progress import progress_bar as shared

    with shared(label, total, matched=True) as bar:
        if bar is None:
            yield lambda _scanned, _matched: None
            return

        def update(scanned: int, matched: int) -> None:
            bar(scanned, matched=matched)

        yield update


def approximate_depth(url: str) -> int | None:
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
    message_id: Annotated[
        str,
        typer.Argument(help="The SQS MessageId (from `dlq list`), or a unique prefix (6+ hex)."),
    ],
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
    scan: dict[str, Any] = {
        "queues": _deps.queues(),
        "queue_url": url,
        "message_filter": flt,
        "lease": lease_seconds,
        "limit": max_messages,
        "mask": not reveal,
        "checkpoint": checkpoint_from_env(),
    }
    with progress_bar("exporting", approximate_depth(url)) as update:
        if out == "-":
            result = dlq.export_messages(stream=whole_stdout(), progress=update, **scan)
        else:
            path = Path(out).expanduser()
            result = dlq.export_to_file(path=path, overwrite=force, progress=update, **scan)
    if out == "-" or output is Output.table:
        message(_export_summary(result, bounded=max_messages is not None))
        return
    render(result, output)


def _export_summary(result: dlq.ExportResult, *, bounded: bool) -> str:
    summary = (
        f"exported {result.exported} of {result.scanned} scanned message(s) from "
        f"{result.queue}"
        + (f" to {result.path}" if result.path else "")
        + (" (personal data masked; --reveal for a raw export)" if result.masked else " (raw)")
    )
    if not result.drained and not bounded:
        summary += (
            f"; warning: the queue still reports {result.visible_at_end} visible "
            "message(s) it would not return (FIFO groups or a busy queue): re-run"
        )
    return summary
