"""Dead-letter queue use cases, one module per seam:

- `scan`: `Scan` (receive every message once under a lease, release at the end), `peek`,
  attribute shaping and job-status lookups;
- `listing`: `dlq list` and `dlq show`;
- `stats`: `dlq stats` (counts per reason, customer, job status, age or source);
- `export`: `dlq export` (`export_record`, `export_messages`, `export_to_file`) and
  `read_manifest`, the one reader of an export file's message ids;
- `snapshot` (the engine) and `purging`: `dlq purge` and `dlq delete`, backup first;
- `replay_file` and `replay`: `dlq replay FILE` (`dbops.services.dlq.replay`);
- `monitoring`: `dlq monitor`.

Personal-data masking lives in `dbops.services.redact`; its names stay importable from
here (`dlq.mask_text`, `dlq.MASK`, ...). Every name callers used from `dbops.services.dlq`
is re-exported below.
"""

from __future__ import annotations

from dbops.services.dlq.export import (
    ExportResult,
    export_messages,
    export_record,
    export_to_file,
    open_export_file,
    read_manifest,
)
from dbops.services.dlq.listing import (
    DlqListing,
    DlqMessage,
    DlqMessageDetail,
    list_messages,
    list_row,
    message_detail,
    preview_text,
    show_message,
)
from dbops.services.dlq.monitoring import MonitorResult, alert_message, monitor
from dbops.services.dlq.purging import (
    FAST_WARNING,
    DeletePreview,
    DeleteResult,
    PurgePreview,
    PurgeResult,
    delete_messages,
    delete_preview,
    purge,
    purge_preview,
)
from dbops.services.dlq.scan import (
    LONG_POLL_SECONDS,
    MAX_EMPTY_RECEIVES,
    PEEK_LEASE_SECONDS,
    SCAN_LEASE_SECONDS,
    Progress,
    Scan,
    ScanStats,
    canonical_job_id,
    job_statuses,
    peek,
    pg_text_array,
    plain_message_attributes,
    simple_message_attributes,
)
from dbops.services.dlq.snapshot import (
    LEASE_SECONDS,
    Backup,
    backup_record,
    default_backup_path,
)
from dbops.services.redact import (
    MASK,
    NOT_JSON,
    is_personal_key,
    load_json,
    mask_body,
    mask_optional,
    mask_personal,
    mask_plain_attributes,
    mask_simple_attributes,
    mask_text,
)

__all__ = [
    "FAST_WARNING",
    "LEASE_SECONDS",
    "LONG_POLL_SECONDS",
    "MASK",
    "MAX_EMPTY_RECEIVES",
    "NOT_JSON",
    "PEEK_LEASE_SECONDS",
    "SCAN_LEASE_SECONDS",
    "Backup",
    "DeletePreview",
    "DeleteResult",
    "DlqListing",
    "DlqMessage",
    "DlqMessageDetail",
    "ExportResult",
    "MonitorResult",
    "Progress",
    "PurgePreview",
    "PurgeResult",
    "Scan",
    "ScanStats",
    "alert_message",
    "backup_record",
    "canonical_job_id",
    "default_backup_path",
    "delete_messages",
    "delete_preview",
    "export_messages",
    "export_record",
    "export_to_file",
    "is_personal_key",
    "job_statuses",
    "list_messages",
    "list_row",
    "load_json",
    "mask_body",
    "mask_optional",
    "mask_personal",
    "mask_plain_attributes",
    "mask_simple_attributes",
    "mask_text",
    "message_detail",
    "monitor",
    "open_export_file",
    "peek",
    "pg_text_array",
    "plain_message_attributes",
    "preview_text",
    "purge",
    "purge_preview",
    "read_manifest",
    "show_message",
    "simple_message_attributes",
]
