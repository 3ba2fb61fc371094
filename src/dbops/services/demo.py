"""`dbops demo`: what is wrong with the backend, in one screen.

Reads the database through the `dbops_demo_summary()` SQL function and the queues
through the Queues port. Thresholds default to the team's (architecture.md section 3).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from dbops.ports import Queues, Store
from dbops.services.presets import RATE_LIMIT_PRESETS
from dbops.services.redact import mask_identifier

NEXT_COMMANDS = [
    "dbops jobs stale --profile sandbox",
    "dbops dlq list --profile sandbox",
    "dbops queue depth --profile sandbox",
    "dbops ratelimit top --profile sandbox",
    "dbops audit --profile sandbox",
    "dbops doctor --profile sandbox",
]


class RateLimitOffender(BaseModel):
    identifier: str  # api keys masked
    endpoint: str
    requests: int
    window_seconds: int
    preset: str | None = None
    limit: int | None = None


class DemoSummary(BaseModel):
    """`dbops demo -o json` -> `summary`: the numbers an on-call engineer looks at first."""

    main_queue_depth: int
    main_queue_in_flight: int
    dlq_depth: int
    jobs_total: int
    stale_jobs: int
    dead_workers_holding_jobs: int
    live_workers: int
    orphaned_pending_jobs: int
    results_stuck_submitting: int
    legacy_complete_jobs: int
    top_rate_limit_offender: RateLimitOffender | None = None
    findings: list[str] = Field(default_factory=list)
    next_commands: list[str] = Field(default_factory=lambda: list(NEXT_COMMANDS))


def preset_for(endpoint: str) -> str | None:
    """The preset an endpoint falls under, by its path (`/api/public/...` -> public)."""
    parts = [p for p in endpoint.split("/") if p]
    for part in parts[:3]:
        if part in RATE_LIMIT_PRESETS:
            return part
    return None


def _depth(queues: Queues, url: str) -> tuple[int, int]:
    attrs = queues.get_attributes(url)
    return (
        int(attrs.get("ApproximateNumberOfMessages", 0)),
        int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def summarize(
    *,
    store: Store,
    queues: Queues,
    main_queue_url: str,
    dlq_url: str,
    stale_seconds: int = 600,
    dead_worker_seconds: int = 120,
    orphan_seconds: int = 1800,
    submitting_seconds: int = 900,
    rate_window_seconds: int = 60,
    backlog_warning: int = 100,
    dlq_alert: int = 1,
) -> DemoSummary:
    rows = store.call(
        "dbops_demo_summary",
        {
            "p_stale_seconds": stale_seconds,
            "p_dead_worker_seconds": dead_worker_seconds,
            "p_orphan_seconds": orphan_seconds,
            "p_submitting_seconds": submitting_seconds,
            "p_rate_window_seconds": rate_window_seconds,
        },
    )
    row = rows[0] if rows else {}
    main_depth, main_in_flight = _depth(queues, main_queue_url)
    dlq_depth, _ = _depth(queues, dlq_url)

    offender = None
    if row.get("top_identifier"):
        endpoint = str(row["top_endpoint"])
        preset = preset_for(endpoint)
        limit = None
        if preset is not None:
            per, window = RATE_LIMIT_PRESETS[preset]
            # Scale the preset's limit to the window we counted over.
            limit = max(1, round(per * rate_window_seconds / window))
        offender = RateLimitOffender(
            identifier=mask_identifier(str(row["top_identifier"])),
            endpoint=endpoint,
            requests=int(row["top_requests"]),
            window_seconds=rate_window_seconds,
            preset=preset,
            limit=limit,
        )

    summary = DemoSummary(
        main_queue_depth=main_depth,
        main_queue_in_flight=main_in_flight,
        dlq_depth=dlq_depth,
        jobs_total=int(row.get("jobs_total") or 0),
        stale_jobs=int(row.get("stale_jobs") or 0),
        dead_workers_holding_jobs=int(row.get("dead_workers_holding_jobs") or 0),
        live_workers=int(row.get("live_workers") or 0),
        orphaned_pending_jobs=int(row.get("orphaned_pending_jobs") or 0),
        results_stuck_submitting=int(row.get("results_stuck_submitting") or 0),
        legacy_complete_jobs=int(row.get("legacy_complete_jobs") or 0),
        top_rate_limit_offender=offender,
    )
    summary.findings = _findings(
        summary,
        stale_minutes=stale_seconds // 60,
        dead_worker_minutes=dead_worker_seconds // 60,
        orphan_minutes=orphan_seconds // 60,
        submitting_minutes=submitting_seconds // 60,
        backlog_warning=backlog_warning,
        dlq_alert=dlq_alert,
    )
    return summary


def _findings(
    s: DemoSummary,
    *,
    stale_minutes: int,
    dead_worker_minutes: int,
    orphan_minutes: int,
    submitting_minutes: int,
    backlog_warning: int,
    dlq_alert: int,
) -> list[str]:
    out: list[str] = []
    if s.dlq_depth >= dlq_alert:
        out.append(f"{s.dlq_depth} message(s) in the dead-letter queue (alert at >= {dlq_alert})")
    if s.main_queue_depth > backlog_warning:
        out.append(f"main queue backlog of {s.main_queue_depth} (warning above {backlog_warning})")
    if s.stale_jobs:
        out.append(
            f"{s.stale_jobs} in-progress job(s) with no sign of life for more than "
            f"{stale_minutes} min (stale)"
        )
    if s.dead_workers_holding_jobs:
        out.append(
            f"{s.dead_workers_holding_jobs} dead worker(s) (no heartbeat for more than "
            f"{dead_worker_minutes} min) still holding a job"
        )
    if s.orphaned_pending_jobs:
        out.append(
            f"{s.orphaned_pending_jobs} pending job(s) older than {orphan_minutes} min that were "
            "never enqueued (orphaned)"
        )
    if s.results_stuck_submitting:
        out.append(
            f"{s.results_stuck_submitting} job result(s) stuck in 'submitting' for more than "
            f"{submitting_minutes} min"
        )
    if s.legacy_complete_jobs:
        out.append(f"{s.legacy_complete_jobs} job(s) with the legacy status 'complete'")
    o = s.top_rate_limit_offender
    if o is not None and o.limit is not None and o.requests > o.limit:
        out.append(
            f"{o.identifier} made {o.requests} requests to {o.endpoint} in the last "
            f"{o.window_seconds} s ({o.preset} limit: {o.limit})"
        )
    return out
