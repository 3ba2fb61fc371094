"""Audit checks `db.*`: reachability, migrations, the schema contract, status values and
idempotency keys."""

from __future__ import annotations

import re
from typing import Any

from dbops.services.audit.base import (
    CheckSpec,
    Context,
    Outcome,
    plural,
    registrar,
    short,
)

CHECKS: list[CheckSpec] = []
check = registrar(CHECKS)

# The columns dbops cannot work without (src/dbops/sql/check.sql is the full contract,
# with types and the optional columns, which are shown empty when absent).
APP_TABLES: dict[str, tuple[str, ...]] = {
    "jobs": (
        "id",
        "customer_id",
        "status",
        "created_at",
        "updated_at",
        "completed_at",
        "error_message",
    ),
    "job_results": ("job_id", "status", "updated_at"),
    "worker_heartbeats": ("worker_id", "status", "current_job_id", "last_heartbeat"),
    "queue_history": ("id", "job_id", "event", "details", "worker_id", "created_at"),
    "rate_limit_requests": ("identifier", "endpoint", "created_at"),
}
# Indexes the backend's own schema should have (matched by leading columns, any name).
APP_INDEXES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("jobs", ("status",), "status filters"),
    ("job_results", ("job_id",), "results per job"),
    ("queue_history", ("job_id",), "history per job"),
    ("rate_limit_requests", ("identifier", "endpoint", "created_at"), "sliding-window lookups"),
)
CANONICAL_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


@check("db.reachable", "Database reachable", 10, "dbops doctor", special=True)
def _db_reachable(ctx: Context) -> Outcome:
    limit = ctx.t.db_latency_warning_ms
    threshold = f"reachable; warning > {limit:g} ms round trip"
    if not ctx.db_configured:
        return Outcome(
            "skipped", "no database configured (DATABASE_URL or SUPABASE_URL)", threshold=threshold
        )
    if ctx.db_error is not None:
        return Outcome("critical", f"database unreachable: {ctx.db_error}", threshold=threshold)
    raw = ctx.db_latency_ms or 0.0
    latency = round(raw, 1)
    if raw > limit:
        return Outcome(
            "warning",
            f"round trip {latency} ms is slow (warning above {limit:g} ms)",
            observed=latency,
            threshold=threshold,
        )
    return Outcome(
        "ok", f"reachable, {latency} ms round trip", observed=latency, threshold=threshold
    )


def _expected_migrations() -> dict[str, str]:
    from dbops.services.migrations import load_migrations

    return {m.version: m.checksum for m in load_migrations("dbops")}


@check("db.migrations", "dbops migrations current", 6, "dbops db migrate", special=True)
def _db_migrations(ctx: Context) -> Outcome:
    threshold = "every dbops migration applied"
    if not ctx.db_configured:
        return Outcome("skipped", "no database configured", threshold=threshold)
    if ctx.db_error is not None:
        return Outcome("unknown", f"database unreachable: {ctx.db_error}", threshold=threshold)
    obs = ctx.obs.get("db.migrations")
    if obs is not None and obs.state == "observed":
        applied = dict(obs.data.get("applied") or {})
    elif ctx.applied_fallback is not None:
        applied = ctx.applied_fallback
    elif obs is not None:
        return Outcome("unknown", obs.reason or "not observed", threshold=threshold)
    else:
        return Outcome("unknown", ctx.observe_error or "not observed", threshold=threshold)
    expected = _expected_migrations()
    pending = sorted(v for v in expected if v not in applied)
    changed = sorted(v for v in expected if v in applied and applied[v] != expected[v])
    done = len(expected) - len(pending)
    observed = f"{done}/{len(expected)} applied"
    details = {"pending": pending, "changed": changed}
    if done == 0:
        return Outcome(
            "critical",
            "dbops is not installed in this database",
            observed=observed,
            threshold=threshold,
            details=details,
        )
    if pending:
        return Outcome(
            "warning",
            f"{plural(len(pending), 'migration')} pending: " + ", ".join(pending),
            observed=observed,
            threshold=threshold,
            details=details,
        )
    if changed:
        return Outcome(
            "warning",
            "applied migrations differ from this dbops version: " + ", ".join(changed),
            observed=observed,
            threshold=threshold,
            remedy="dbops db status",
            details=details,
        )
    return Outcome(
        "ok",
        f"all {len(expected)} dbops migrations applied",
        observed=observed,
        threshold=threshold,
        details=details,
    )


_INDEX_RE = re.compile(
    r"create\s+(?:unique\s+)?index\s+(?:concurrently\s+)?(?:if\s+not\s+exists\s+)?"
    r"([a-z_][a-z0-9_]*)\s+on\s+(?:only\s+)?(?:public\.)?([a-z_][a-z0-9_]*)",
    re.IGNORECASE,
)


def recommended_indexes() -> list[tuple[str, str, str]]:
    """(table, index name, migration) for indexes dbops migrations create on app tables."""
    from dbops.services.migrations import load_migrations

    found: list[tuple[str, str, str]] = []
    for m in load_migrations("dbops"):
        text = re.sub(r"--[^\n]*", "", m.sql)
        for name, table in _INDEX_RE.findall(text):
            if table.lower() in APP_TABLES:
                found.append((table.lower(), name.lower(), f"{m.version}_{m.name}"))
    return found


@check("db.schema", "Schema contract", 6, "dbops db migrate", db=("db.schema",))
def _db_schema(ctx: Context) -> Outcome:
    threshold = "expected tables and columns (critical); recommended indexes (warning)"
    tables: dict[str, Any] = ctx.data("db.schema").get("tables") or {}
    missing_tables = [t for t in APP_TABLES if tables.get(t) is None]
    missing_columns = [
        f"{t}.{c}"
        for t, cols in APP_TABLES.items()
        if tables.get(t) is not None
        for c in cols
        if c not in (tables[t].get("columns") or [])
    ]

    def indexes(table: str) -> list[dict[str, Any]]:
        entry = tables.get(table) or {}
        return [i for i in entry.get("indexes") or [] if i.get("valid", True)]

    missing_indexes: list[str] = []
    for table, name, migration in recommended_indexes():
        if tables.get(table) is None:
            continue
        if not any(i.get("name") == name for i in indexes(table)):
            missing_indexes.append(f"{name} on {table} (from {migration})")
    for table, cols, why in APP_INDEXES:
        if tables.get(table) is None:
            continue
        if not any(tuple((i.get("columns") or [])[: len(cols)]) == cols for i in indexes(table)):
            missing_indexes.append(f"{table} ({', '.join(cols)}) for {why}")
    details = {
        "missing_tables": missing_tables,
        "missing_columns": missing_columns,
        "missing_indexes": missing_indexes,
    }
    problems = len(missing_tables) + len(missing_columns) + len(missing_indexes)
    if missing_tables or missing_columns:
        what = [f"missing table(s): {', '.join(missing_tables)}"] if missing_tables else []
        if missing_columns:
            what.append(f"missing column(s): {', '.join(missing_columns[:6])}")
        return Outcome(
            "critical",
            "; ".join(what) + " (is DATABASE_URL the backend's database?)",
            observed=problems,
            threshold=threshold,
            remedy="dbops db check",
            details=details,
        )
    if missing_indexes:
        return Outcome(
            "warning",
            "missing recommended index(es): " + "; ".join(missing_indexes),
            observed=problems,
            threshold=threshold,
            details=details,
        )
    return Outcome(
        "ok",
        "expected tables, columns and recommended indexes present",
        observed=0,
        threshold=threshold,
        details=details,
    )


@check(
    "db.legacy_status",
    "Legacy status values",
    2,
    "dbops jobs list --status complete",
    db=("db.legacy_status",),
)
def _db_legacy_status(ctx: Context) -> Outcome:
    threshold = "warning >= 1 job with a status outside " + "|".join(CANONICAL_STATUSES)
    statuses: dict[str, int] = {
        str(k): int(v) for k, v in (ctx.data("db.legacy_status").get("statuses") or {}).items()
    }
    legacy = statuses.get("complete", 0)
    other = {k: v for k, v in statuses.items() if k not in CANONICAL_STATUSES and k != "complete"}
    total = legacy + sum(other.values())
    details = {"statuses": statuses, "legacy_complete": legacy, "unknown_statuses": other}
    if total == 0:
        return Outcome(
            "ok",
            "every job uses a current status value",
            observed=0,
            threshold=threshold,
            details=details,
        )
    parts = []
    if legacy:
        parts.append(
            f"{plural(legacy, 'job')} with the legacy status 'complete' (read as completed)"
        )
    if other:
        parts.append(
            "unexpected status value(s): "
            + ", ".join(f"{k!r} x{v}" for k, v in sorted(other.items()))
        )
    return Outcome(
        "warning", "; ".join(parts), observed=total, threshold=threshold, details=details
    )


@check(
    "db.idempotency_keys",
    "Idempotency keys unique",
    4,
    "dbops jobs stats",
    db=("db.idempotency_keys",),
)
def _db_idempotency(ctx: Context) -> Outcome:
    threshold = "unique index (warning without); 0 duplicate keys (critical)"
    d = ctx.data("db.idempotency_keys")
    dup_keys, dup_rows = int(d.get("duplicate_keys") or 0), int(d.get("duplicate_rows") or 0)
    sample = list(d.get("sample") or [])
    details = {
        "unique_index": bool(d.get("unique_index")),
        "duplicate_keys": dup_keys,
        "duplicate_rows": dup_rows,
        "sample_job_ids": sample,
    }
    if dup_keys:
        remedy = f"dbops jobs show {sample[0]}" if sample else "dbops jobs stats"
        return Outcome(
            "critical",
            f"{plural(dup_keys, 'idempotency key')} used by "
            f"{dup_rows} job_results rows: a submission was made twice "
            f"(jobs {short(sample)})",
            observed=dup_keys,
            threshold=threshold,
            remedy=remedy,
            details=details,
        )
    if not d.get("unique_index"):
        return Outcome(
            "warning",
            "job_results.idempotency_key has no unique index: duplicates "
            "are not prevented (none found)",
            observed=0,
            threshold=threshold,
            remedy="dbops jobs stats",
            details=details,
        )
    return Outcome(
        "ok",
        "idempotency keys are unique (unique index)",
        observed=0,
        threshold=threshold,
        details=details,
    )
