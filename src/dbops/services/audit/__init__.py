"""`dbops audit`: one read-only health report for database, jobs, workers, queues and
rate limits, with a score, a verdict and Nagios-style exit codes.

How a run works (one database round trip for all database-side checks):

1. `store.ping()` (check `db.reachable`).
2. `dbops_audit_observe(...)`: a STABLE SQL function that first switches its transaction
   to READ ONLY and returns one row per observation (state `observed` / `skipped` /
   `unknown`, a jsonb payload, a reason, and its own elapsed time). Only the
   observations the selected checks need are computed (`p_only`).
3. Read-only SQS calls: `get_attributes` (main queue and DLQ), `resolve_url` when the
   DLQ has to be found from the redrive policy, and CloudWatch through
   `queues.oldest_message_age`. Never `receive` (it would raise receive counts).
4. Every check turns its observation into a severity with thresholds from
   `settings.audit` (per profile under `[profiles.NAME.audit]`).
5. Score, verdict, changes since the previous stored run; then, unless `save=False`, the
   run is stored with `dbops_audit_run_save` (the only write, after all checks).


Layout: `models` (report models, severities), `base` (context, outcome, check spec and
the `@check` decorator), one module per check area (`db`, `jobs`, `workers`, `queues`,
`ratelimit`: each check's spec sits on its function), `registry` (CHECKS, selection),
`runner` (gathering, evaluation, score, verdict, save), `runs` (changes between runs; stored
runs read back for `audit history`, `audit show` and `audit diff`). Weights and rules are
documented in docs/audit.md; keep the two in step.
"""

from dbops.services.audit.base import CheckSpec, Context, Observation, Outcome, QueueState
from dbops.services.audit.db import APP_INDEXES, APP_TABLES, CANONICAL_STATUSES, recommended_indexes
from dbops.services.audit.models import (
    AREA_OF_PREFIX,
    AREAS,
    SEVERITY_FACTOR,
    VERDICT_EXIT,
    AuditCheck,
    AuditDiff,
    AuditReport,
    AuditRun,
    CheckChange,
    FailOn,
    PreviousRun,
    Severity,
    Verdict,
)
from dbops.services.audit.queues import MAX_RECEIVE_RANGE, OLDEST_AGE_CRITICAL_FACTOR
from dbops.services.audit.registry import CHECK_IDS, CHECKS, select_checks, selection_of
from dbops.services.audit.runner import (
    ERROR_WINDOW_SECONDS,
    RATIO_WINDOW_SECONDS,
    evaluate,
    exit_code_for,
    run_audit,
    score_of,
    verdict_of,
)
from dbops.services.audit.runs import diff_runs, history, resolve_run, show_run
from dbops.services.presets import RATE_LIMIT_PRESETS

__all__ = [
    "APP_INDEXES",
    "APP_TABLES",
    "AREAS",
    "AREA_OF_PREFIX",
    "CANONICAL_STATUSES",
    "CHECKS",
    "CHECK_IDS",
    "ERROR_WINDOW_SECONDS",
    "MAX_RECEIVE_RANGE",
    "OLDEST_AGE_CRITICAL_FACTOR",
    "RATE_LIMIT_PRESETS",
    "RATIO_WINDOW_SECONDS",
    "SEVERITY_FACTOR",
    "VERDICT_EXIT",
    "AuditCheck",
    "AuditDiff",
    "AuditReport",
    "AuditRun",
    "CheckChange",
    "CheckSpec",
    "Context",
    "FailOn",
    "Observation",
    "Outcome",
    "PreviousRun",
    "QueueState",
    "Severity",
    "Verdict",
    "diff_runs",
    "evaluate",
    "exit_code_for",
    "history",
    "recommended_indexes",
    "resolve_run",
    "run_audit",
    "score_of",
    "select_checks",
    "selection_of",
    "show_run",
    "verdict_of",
]
