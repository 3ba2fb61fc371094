"""`dlq export`: write messages as JSON lines (the format purge/delete backups, manifests
and `dlq replay` share: see docs/dlq.md), and `read_manifest`, the one reader of such a
file's message ids."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from dbops.errors import UsageError
from dbops.files import write_private
from dbops.names import queue_name
from dbops.ports import Checkpoint, Queues
from dbops.services.dlq.scan import SCAN_LEASE_SECONDS, Progress, Scan, plain_message_attributes
from dbops.services.messages import MessageFilter, ParsedMessage
from dbops.services.redact import (
    JSON_MAX_DEPTH,
    NOT_JSON,
    load_json,
    mask_body,
    mask_optional,
    mask_plain_attributes,
)


def export_record(message: ParsedMessage, *, queue: str, mask: bool = False) -> dict[str, Any]:
    """One line of an export file (the format `--manifest` reads: see docs/dlq.md).

    Raw by default (purge and delete backups, `dlq export --reveal`): `body` is exactly the
    message body. With `mask`, personal data is masked in the body, the text fields and
    the attribute values, and the line says `"masked": true`: such a line can no longer
    restore the message, and `dlq replay` refuses it.
    """
    attributes = plain_message_attributes(message.message_attributes)
    body, job_id, customer, reason = (
        message.body,
        message.job_id,
        message.customer_id,
        message.reason,
    )
    if mask:
        body = mask_body(body)
        job_id, customer, reason = map(mask_optional, (job_id, customer, reason))
        attributes = mask_plain_attributes(attributes)
    return {
        "message_id": message.message_id,
        "queue": queue,
        "masked": mask,
        "job_id": job_id,
        "customer_id": customer,
        "reason": reason,
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "receive_count": message.receive_count,
        "size": message.size,
        "body": body,
        "message_attributes": attributes,
        "system_attributes": dict(message.attributes),
        "notes": message.notes,
    }


class ExportResult(BaseModel):
    """`dbops dlq export -o json`."""

    queue: str
    path: str | None = None
    scanned: int
    exported: int
    released: int
    release_failed: int = 0
    drained: bool
    visible_at_end: int | None = None
    filtered: bool
    masked: bool = False


def open_export_file(path: Path, *, overwrite: bool = False) -> Any:
    """The export file: 0600 from the start (exports hold personal data), written to a
    temporary file and renamed into place at the end, so `--force` never leaves a mix of
    the old and the new export, and a write failure leaves no partial file (exit 6)."""
    return write_private(path, overwrite=overwrite)


class TextSink(Protocol):
    """Where `export_messages` writes: a text file, or the CLI's standard output."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def fileno(self) -> int: ...


def _sync(stream: TextSink) -> None:
    stream.flush()
    with contextlib.suppress(OSError, ValueError):  # stdout, a pipe
        os.fsync(stream.fileno())


def export_messages(
    *,
    queues: Queues,
    queue_url: str,
    stream: TextSink,
    message_filter: MessageFilter | None = None,
    lease: int = SCAN_LEASE_SECONDS,
    limit: int | None = None,
    progress: Progress | None = None,
    mask: bool = False,
    checkpoint: Checkpoint | None = None,
) -> ExportResult:
    """Write every (matching) message as one JSON line, as received (raw), or with personal
    data masked (`mask`: see `export_record`); non-destructive."""
    message_filter = message_filter or MessageFilter()
    name = queue_name(queue_url)
    exported = 0
    with Scan(queues, queue_url, lease=lease, limit=limit) as scan:
        for batch in scan.batches():
            for message in batch:
                if message_filter.accepts(message):
                    record = export_record(message, queue=name, mask=mask)
                    stream.write(json.dumps(record) + "\n")
                    exported += 1
            _sync(stream)
            if progress:
                progress(scan.stats.scanned, exported)
            if checkpoint:
                checkpoint("export_batch")
    return ExportResult(
        queue=name,
        scanned=scan.stats.scanned,
        exported=exported,
        released=scan.stats.released,
        release_failed=scan.stats.release_failed,
        drained=scan.stats.drained,
        visible_at_end=scan.stats.visible_at_end,
        filtered=not message_filter.is_empty,
        masked=mask,
    )


def export_to_file(
    *,
    queues: Queues,
    queue_url: str,
    path: Path,
    overwrite: bool = False,
    message_filter: MessageFilter | None = None,
    lease: int = SCAN_LEASE_SECONDS,
    limit: int | None = None,
    progress: Progress | None = None,
    mask: bool = False,
    checkpoint: Checkpoint | None = None,
) -> ExportResult:
    with open_export_file(path, overwrite=overwrite) as stream:
        result = export_messages(
            queues=queues,
            queue_url=queue_url,
            stream=stream,
            message_filter=message_filter,
            lease=lease,
            limit=limit,
            progress=progress,
            mask=mask,
            checkpoint=checkpoint,
        )
    result.path = str(path)
    return result


def read_manifest(path: Path | str) -> list[str]:
    """MessageIds listed in an export file (JSON lines with `message_id`), in order, once.

    Also accepted per line: `{"MessageId": ...}` (AWS shape) and a JSON string. Blank lines
    are skipped; anything else is a usage error naming the line.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror}") from None
    ids: dict[str, None] = {}
    with handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            item = load_json(text)
            if item is NOT_JSON:
                raise UsageError(
                    f"manifest {path} line {number} is not JSON"
                    f" (or nested over {JSON_MAX_DEPTH} deep)",
                    hint="use a file written by `dbops dlq export`",
                )
            value = (
                item.get("message_id", item.get("MessageId")) if isinstance(item, dict) else item
            )
            if not isinstance(value, str) or not value.strip():
                raise UsageError(
                    f"manifest {path} line {number} has no message_id",
                    hint="use a file written by `dbops dlq export`",
                )
            ids.setdefault(value.strip(), None)
    return list(ids)
