"""`dbops dlq purge` and `dbops dlq delete`: remove messages, each backed up first.

Registered on the `dlq` app through `register(app)` by `cli/main.py`'s loader; the shared
DLQ options and helpers come from `dlq_cmd`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dbops.cli import _deps
from dbops.cli._checkpoint import checkpoint_from_env
from dbops.cli._common import DryRunOpt, YesOpt, confirm, recorder
from dbops.cli.dlq_cmd import (
    CustomerOpt,
    JobIdOpt,
    LeaseOpt,
    MatchOpt,
    NewerOpt,
    OlderOpt,
    QueueOpt,
    ReasonOpt,
    approximate_depth,
    build_filter,
    filter_arguments,
    progress_bar,
    queue_url,
)
from dbops.cli.output import Output, OutputOpt, message, render
from dbops.durations import parse_duration
from dbops.errors import RemoteError, UsageError
from dbops.services.dlq import purging
from dbops.services.messages import MessageFilter

# The options of `purge` and `delete` beyond the shared DLQ ones (`dlq_cmd`).
PurgeBackupOpt = Annotated[
    str | None,
    typer.Option(
        "--backup",
        help="Backup file (default: <data dir>/backups/<queue>-purge-<time>.jsonl).",
        show_default=False,
    ),
]
PurgeNoBackupOpt = Annotated[
    bool, typer.Option("--no-backup", help="Purge without writing a backup first.")
]
FastOpt = Annotated[
    bool,
    typer.Option(
        "--fast",
        help="Use PurgeQueue after the backup scan: can delete messages that arrive "
        "meanwhile (up to 60 s) without backing them up.",
    ),
]
DeleteManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="Delete exactly the MessageIds listed in this export file.",
        show_default=False,
    ),
]
DeleteBackupOpt = Annotated[
    str | None,
    typer.Option(
        "--backup",
        help="Write deleted messages here first (default: <data dir>/"
        "backups/<queue>-delete-<time>.jsonl).",
        show_default=False,
    ),
]
DeleteNoBackupOpt = Annotated[
    bool, typer.Option("--no-backup", help="Do not keep a copy of deleted messages.")
]


def _exclusive(backup: str | None, no_backup: bool) -> None:
    if backup and no_backup:
        raise UsageError("--backup and --no-backup are mutually exclusive")


def _backup_path(url: str, backup: str | None, *, no_backup: bool, kind: str) -> Path | None:
    """`--backup`, the default backup file, or None with --no-backup; never an existing file."""
    if no_backup:
        return None
    path = Path(backup).expanduser() if backup else purging.default_backup_path(url, kind)
    if path.exists():
        raise UsageError(f"backup file {path} already exists", hint="choose another --backup")
    return path


# --------------------------------------------------------------------------- purge
def _purge_summary(r: purging.PurgeResult) -> None:
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


def _announce_purge(preview: purging.PurgePreview, backup_path: Path | None) -> None:
    message(
        f"{preview.queue} holds {preview.total} message(s) ({preview.visible} visible, "
        f"{preview.in_flight} in flight, {preview.delayed} delayed); "
        + (
            "PurgeQueue (--fast)"
            if preview.fast
            else f"will scan at most {preview.snapshot} and delete exactly what it backs up"
        )
        + "; "
        + (f"backup to {backup_path}" if backup_path else "NO backup")
    )
    if preview.warning:
        message(f"warning: {preview.warning}", style="yellow")


def _run_purge(
    preview: purging.PurgePreview,
    *,
    url: str,
    backup_path: Path | None,
    lease_seconds: int,
    arguments: dict[str, object],
) -> purging.PurgeResult:
    with recorder("dlq purge", arguments) as rec:
        with progress_bar("backing up", preview.snapshot) as update:
            result = purging.purge(
                queues=_deps.queues(),
                queue_url=url,
                backup=backup_path,
                snapshot=preview.snapshot,
                fast=preview.fast,
                lease=lease_seconds,
                progress=update,
                checkpoint=checkpoint_from_env(),
            )
        rec.counts = result.counts()
    return result


def purge(
    queue: QueueOpt = None,
    backup: PurgeBackupOpt = None,
    no_backup: PurgeNoBackupOpt = False,
    fast: FastOpt = False,
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
    _exclusive(backup, no_backup)
    lease_seconds = parse_duration(lease, option="--lease")
    purging.validate(lease=lease_seconds)
    url = queue_url(queue)
    port = _deps.queues()
    backup_path = _backup_path(url, backup, no_backup=no_backup, kind="purge")
    preview = purging.purge_preview(queues=port, queue_url=url, backup=backup_path, fast=fast)
    arguments: dict[str, object] = {
        "queue": preview.queue,
        "backup": preview.backup,
        "no_backup": no_backup,
        "fast": fast,
    }
    _announce_purge(preview, backup_path)
    if dry_run:
        with recorder("dlq purge", arguments, dry_run=True) as rec:
            rec.counts = {"total": preview.total, "snapshot": preview.snapshot}
        render(preview, output, table=lambda _p: message("dry run: nothing purged"))
        return
    if (preview.total if fast else preview.snapshot) == 0:
        message(f"{preview.queue} has nothing to purge")
        nothing = purging.PurgeResult(
            queue=preview.queue, mode="fast" if fast else "snapshot", left_in_place=preview.total
        )
        render(nothing, output, table=lambda _r: None)
        return
    confirm(
        f"purge {preview.total if fast else preview.snapshot} message(s) from {preview.queue}"
        + (" with PurgeQueue" if fast else "")
        + ("" if backup_path else " without a backup"),
        yes=yes,
        dry_run=False,
    )
    result = _run_purge(
        preview, url=url, backup_path=backup_path, lease_seconds=lease_seconds, arguments=arguments
    )
    render(result, output, table=_purge_summary)
    if result.failed:
        raise RemoteError(
            f"{result.failed} message(s) could not be deleted (still in the queue, and in the "
            "backup): " + "; ".join(result.failures[:3])
        )


# --------------------------------------------------------------------------- delete
def _delete_filter(
    *,
    job_id: list[str] | None,
    customer: list[str] | None,
    match: list[str] | None,
    reason: str | None,
    older_than: str | None,
    newer_than: str | None,
    manifest: Path | None,
) -> MessageFilter:
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
    return flt


def _nothing_deleted(preview: purging.DeletePreview) -> purging.DeleteResult:
    return purging.DeleteResult(
        queue=preview.queue,
        snapshot=preview.snapshot,
        scanned=preview.scanned,
        matched=0,
        deleted=0,
        failed=0,
        released=preview.released,
        drained=preview.drained,
    )


def _run_delete(
    flt: MessageFilter,
    *,
    matched: int,
    url: str,
    backup_path: Path | None,
    lease_seconds: int,
    arguments: dict[str, object],
) -> purging.DeleteResult:
    with recorder("dlq delete", arguments) as rec:
        with progress_bar("deleting", matched) as update:
            result = purging.delete_messages(
                queues=_deps.queues(),
                queue_url=url,
                message_filter=flt,
                backup=backup_path,
                lease=lease_seconds,
                progress=update,
                checkpoint=checkpoint_from_env(),
            )
        rec.counts = result.counts()
    return result


def _delete_summary(r: purging.DeleteResult) -> None:
    message(
        f"deleted {r.deleted} of {r.matched} matching message(s) from {r.queue}"
        + (f", {r.failed} failed" if r.failed else "")
        + (f"; copies in {r.backup}" if r.backup else "")
    )


def delete(
    queue: QueueOpt = None,
    job_id: JobIdOpt = None,
    customer: CustomerOpt = None,
    match: MatchOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    manifest: DeleteManifestOpt = None,
    backup: DeleteBackupOpt = None,
    no_backup: DeleteNoBackupOpt = False,
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
    _exclusive(backup, no_backup)
    flt = _delete_filter(
        job_id=job_id,
        customer=customer,
        match=match,
        reason=reason,
        older_than=older_than,
        newer_than=newer_than,
        manifest=manifest,
    )
    lease_seconds = parse_duration(lease, option="--lease")
    purging.validate(lease=lease_seconds)
    url = queue_url(queue)
    port = _deps.queues()
    backup_path = _backup_path(url, backup, no_backup=no_backup, kind="delete")
    with progress_bar("counting", approximate_depth(url)) as update:
        preview = purging.delete_preview(
            queues=port,
            queue_url=url,
            message_filter=flt,
            lease=lease_seconds,
            progress=update,
        )
    arguments: dict[str, object] = {
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
        render(_nothing_deleted(preview), output, table=lambda _r: message("nothing to delete"))
        return
    confirm(f"delete {preview.matched} message(s) from {preview.queue}", yes=yes, dry_run=False)
    result = _run_delete(
        flt,
        matched=preview.matched,
        url=url,
        backup_path=backup_path,
        lease_seconds=lease_seconds,
        arguments=arguments,
    )
    render(result, output, table=_delete_summary)
    if result.failed:
        raise RemoteError(
            f"{result.failed} message(s) could not be deleted: " + "; ".join(result.failures[:3])
        )


def register(app: typer.Typer) -> None:
    """Add `purge` and `delete` to the `dlq` app."""
    app.command("purge")(purge)
    app.command("delete")(delete)
