"""`dbops audit` report models (the `-o json` shapes), severities and verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["ok", "warning", "critical", "skipped", "unknown"]
Verdict = Literal["OK", "WARNING", "CRITICAL", "UNKNOWN"]
FailOn = Literal["warning", "critical"]

# Nagios plugin convention.
VERDICT_EXIT: dict[str, int] = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
# Share of a check's weight it keeps in the score; skipped checks are left out entirely.
SEVERITY_FACTOR: dict[str, float] = {"ok": 1.0, "unknown": 0.75, "warning": 0.5, "critical": 0.0}
# Worst first: the verdict is the worst severity present (unknown only if nothing is worse).
RANK: dict[str, int] = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0, "skipped": -1}

AREAS = ("database", "jobs", "workers", "queue", "ratelimit")
AREA_OF_PREFIX = {
    "db": "database",
    "jobs": "jobs",
    "workers": "workers",
    "queue": "queue",
    "ratelimit": "ratelimit",
}


class AuditCheck(BaseModel):
    """One check of `dbops audit -o json` (`checks[]`)."""

    id: str
    area: str
    title: str
    severity: Severity
    observed: int | float | str | None = None
    threshold: str | None = None
    explanation: str
    remedy: str | None = None
    weight: int
    elapsed_ms: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class PreviousRun(BaseModel):
    """`previous` of `dbops audit -o json`: the stored run this one is compared with.
    `id` is its internal serial number, `run_uuid` its run id (what `dbops audit show`
    takes; null only for runs read from a database older than migration 0019)."""

    id: int | None = None
    run_uuid: str | None = None
    score: int
    verdict: Verdict
    generated_at: datetime


# A numeric observation "moved notably" at the same severity when it changed by at least
# VALUE_CHANGE_MIN (in the check's own unit) and by at least VALUE_CHANGE_RATIO of the
# previous value (e.g. DLQ depth 19 -> 140, or 140 -> 19; not 19 -> 25, nor 2 -> 9).
VALUE_CHANGE_RATIO = 0.5
VALUE_CHANGE_MIN = 10
# Observations that are measurement noise rather than the backend's state.
VALUE_CHANGE_EXEMPT = frozenset({"db.reachable"})


class CheckChange(BaseModel):
    """One entry of `dbops audit -o json` `changes[]`: a check present in this run and the
    previous stored run that either changed severity or moved notably at the same one.

    `kind` is `"severity"` (`before` != `after`) or `"value"` (`before` == `after`, and the
    numeric `observed` changed by at least VALUE_CHANGE_MIN and by at least
    VALUE_CHANGE_RATIO x the previous value; `db.reachable`'s latency is left out).
    `observed_before` / `observed_after` are the two runs' `observed` values (any type,
    null when a run had none). Example: `{"id": "queue.dlq_depth", "title": "...",
    "before": "warning", "after": "warning", "kind": "value", "observed_before": 19,
    "observed_after": 140}`.
    """

    id: str
    title: str
    before: Severity
    after: Severity
    kind: Literal["severity", "value"] = "severity"
    observed_before: int | float | str | None = None
    observed_after: int | float | str | None = None


class AuditReport(BaseModel):
    """`dbops audit -o json` and `dbops audit show RUN -o json`: a stable schema (add
    fields, never rename or remove).

    `run_id` is the stored run's internal serial number (kept for compatibility);
    `run_uuid` is its run id, the whole UUID that `dbops audit show` and `audit history`
    use (tables print its first 8 characters, a valid short id). Both are null when the
    run was not stored. A report read back by `audit show` has `saved` true, its stored
    `generated_at`, `duration_ms`, checks and verdict, `previous`/`changes` as they were
    against the run before it with the same selection, and `database_ms`/`transport` null
    (not stored).
    """

    score: int
    verdict: Verdict
    exit_code: int
    generated_at: datetime
    duration_ms: float
    database_ms: float | None = None
    transport: str | None = None
    checks: list[AuditCheck]
    previous: PreviousRun | None = None
    changes: list[CheckChange] = Field(default_factory=list)
    saved: bool = False
    run_id: int | None = None
    run_uuid: str | None = None
    save_error: str | None = None

    def check(self, check_id: str) -> AuditCheck:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    @property
    def problems(self) -> list[AuditCheck]:
        return [c for c in self.checks if c.severity in ("warning", "critical", "unknown")]


class AuditRun(BaseModel):
    """One row of `dbops audit history -o json`: `id` is the run's internal serial number,
    `run_uuid` its run id (whole UUID; the table prints 8 characters) for `dbops audit
    show`. Example: `{"id": 42, "run_uuid": "4443bbfa-0b1c-4f55-9d2e-5e8e1c1f0a77",
    "generated_at": "...", "score": 62, "verdict": "CRITICAL", "duration_ms": 41.2,
    "ok": 20, "warning": 2, "critical": 1, "unknown": 0, "skipped": 3, "selection":
    {"check": [], "skip": []}, "operator": "alice"}`."""

    id: int
    run_uuid: str | None = None
    generated_at: datetime
    score: int
    verdict: Verdict
    duration_ms: float | None = None
    ok: int = 0
    warning: int = 0
    critical: int = 0
    unknown: int = 0
    skipped: int = 0
    selection: dict[str, Any] = Field(default_factory=dict)
    operator: str | None = None


class AuditDiff(BaseModel):
    """`dbops audit diff A B -o json`: what changed from stored run `before` (A) to
    stored run `after` (B). `changes` are the checks present in both whose severity
    differs or whose numeric `observed` moved notably at the same severity (the rule of
    `CheckChange`, as `dbops audit` reports against its previous run); `only_before` /
    `only_after` are check ids one run has and the other has not (different --check/--skip
    selections, or checks added since). Example: `{"before": {"id": 41, "run_uuid":
    "0c9e...", "score": 80, "verdict": "WARNING", "generated_at": "..."}, "after": {...},
    "changes": [{"id": "jobs.stale", "title": "...", "before": "warning", "after":
    "critical", "kind": "severity", "observed_before": 4, "observed_after": 18}],
    "only_before": [], "only_after": ["queue.dlq_growth"]}`."""

    before: PreviousRun
    after: PreviousRun
    changes: list[CheckChange] = Field(default_factory=list)
    only_before: list[str] = Field(default_factory=list)
    only_after: list[str] = Field(default_factory=list)
