"""`dbops jobs`: find, inspect and safely recover stale and orphaned jobs.

Modules: `models` (the `-o json` shapes, constants), `inputs` (argument checks), `queries`
(read-only: list, stale, orphans, get, stats, show with its DLQ peek), `outbox` (run ids,
leases, sending), `usecases` (recover, requeue, fail), `bulk` (retry, and fail by filter).
Callers import this package.

Every database step is a `dbops_jobs_*` SQL function (sql/dbops/0002_jobs.sql, the write
side in 0008_jobs_actions.sql, bulk actions in 0012_jobs_bulk.sql), so this works the same
over direct Postgres and Supabase's PostgREST.

Recovery (`recover`, `requeue`, `retry`) is an outbox protocol:
1. rows left unsent by an earlier run are taken first (leased, oldest first);
2. a claim function moves jobs and writes one outbox row per re-queued job in the same
   transaction, leased to this run (`lease_owner`, `sending_until`);
3. messages go to SQS in batches of 10; each batch is recorded with one database call
   (MessageIds); entries SQS refused stay unsent and are retried by the next run.
A run that dies between 2 and 3 leaves its rows in the outbox; the next run takes them
over. Each run has a random run id registered in `dbops_job_runs` with a lease it renews
as it works; over direct Postgres it also holds a session advisory lock, so a killed run
is seen dead at once (wherever it ran), and a stalled one once its lease expired. Only
the run that still holds a row may record it sent: a stalled run whose rows were taken
over reports them as `possibly_duplicated` (sent by both runs, never lost).

On a FIFO main queue each message carries MessageGroupId (the job id, or the customer id
with `group_by="customer"`) and a MessageDeduplicationId derived from its outbox row, so
SQS itself drops a resend of the same recovery within its 5-minute window.
"""

from __future__ import annotations

from dbops.ports import Checkpoint
from dbops.services.jobs.bulk import (
    fail_bulk,
    fail_bulk_dry_run,
    fail_bulk_preview,
    job_filter,
    retry,
    retry_dry_run,
    retry_preview,
    select_jobs,
)
from dbops.services.jobs.inputs import (
    _check_limit,
    _chunks,
    check_recover_threshold,
    parse_job_ids,
    resolve_job_ids,
)
from dbops.services.jobs.models import (
    BULK_LIMIT,
    DEFAULT_CHUNK,
    DLQ_PEEK_RECEIVES,
    DLQ_PEEK_VISIBILITY,
    LEASE_SECONDS,
    MIN_RECOVER_OLDER_THAN_SECONDS,
    RETRY_CHUNK,
    SHOW_HISTORY,
    SQS_BATCH,
    STATUSES,
    WORKER_DEAD_SECONDS,
    BulkPreview,
    FailedJob,
    FailResult,
    GroupBy,
    HistoryEvent,
    HourlyCount,
    Job,
    JobDetail,
    JobDlqMessage,
    JobFilter,
    JobState,
    JobStats,
    OrphanJob,
    OutboxState,
    Progress,
    RecoveredJob,
    RecoverPreview,
    RecoverResult,
    RecoveryIncomplete,
    RecoveryRecord,
    RequeuePreview,
    RequeueResult,
    RetryResult,
    StaleJob,
    WorkerInfo,
)
from dbops.services.jobs.outbox import (
    _DATETIME,
    _finalize,
    _finish_outbox,
    _incomplete,
    _iso,
    _outgoing,
    _release,
    _Sender,
    _start_run,
    _waiting,
    lease_owner,
    message_body,
    outbox_state,
)
from dbops.services.jobs.queries import (
    _float,
    get_jobs,
    list_jobs,
    mask_detail,
    orphans,
    peek_dlq,
    show,
    stale,
    stats,
)
from dbops.services.jobs.usecases import (
    _fresh,
    fail,
    fail_dry_run,
    fail_preview,
    fail_skip_reason,
    recover,
    recover_dry_run,
    recover_preview,
    requeue,
    requeue_dry_run,
    requeue_preview,
)

__all__ = [
    "BULK_LIMIT",
    "DEFAULT_CHUNK",
    "DLQ_PEEK_RECEIVES",
    "DLQ_PEEK_VISIBILITY",
    "LEASE_SECONDS",
    "MIN_RECOVER_OLDER_THAN_SECONDS",
    "RETRY_CHUNK",
    "SHOW_HISTORY",
    "SQS_BATCH",
    "STATUSES",
    "WORKER_DEAD_SECONDS",
    "_DATETIME",
    "BulkPreview",
    "Checkpoint",
    "FailResult",
    "FailedJob",
    "GroupBy",
    "HistoryEvent",
    "HourlyCount",
    "Job",
    "JobDetail",
    "JobDlqMessage",
    "JobFilter",
    "JobState",
    "JobStats",
    "OrphanJob",
    "OutboxState",
    "Progress",
    "RecoverPreview",
    "RecoverResult",
    "RecoveredJob",
    "RecoveryIncomplete",
    "RecoveryRecord",
    "RequeuePreview",
    "RequeueResult",
    "RetryResult",
    "StaleJob",
    "WorkerInfo",
    "_Sender",
    "_check_limit",
    "_chunks",
    "_finalize",
    "_finish_outbox",
    "_float",
    "_fresh",
    "_incomplete",
    "_iso",
    "_outgoing",
    "_release",
    "_start_run",
    "_waiting",
    "check_recover_threshold",
    "fail",
    "fail_bulk",
    "fail_bulk_dry_run",
    "fail_bulk_preview",
    "fail_dry_run",
    "fail_preview",
    "fail_skip_reason",
    "get_jobs",
    "job_filter",
    "lease_owner",
    "list_jobs",
    "mask_detail",
    "message_body",
    "orphans",
    "outbox_state",
    "parse_job_ids",
    "peek_dlq",
    "recover",
    "recover_dry_run",
    "recover_preview",
    "requeue",
    "requeue_dry_run",
    "requeue_preview",
    "resolve_job_ids",
    "retry",
    "retry_dry_run",
    "retry_preview",
    "select_jobs",
    "show",
    "stale",
    "stats",
]
