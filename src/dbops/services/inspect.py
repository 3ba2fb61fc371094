"""`dbops db inspect`: what an engineer checks on a database under load (read-only).

Each section is one STABLE `dbops_inspect_*` SQL function (sql/dbops/0011_inspect.sql), so
every section works over direct Postgres and over PostgREST alike; each runs in a read-only
transaction and nothing here cancels or terminates a backend. Queries are shown cut and with
their literals masked (`dbops.services.redact.mask_sql`, linear time).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dbops.errors import UsageError
from dbops.ports import Store
from dbops.services.redact import mask_sql

QUERY_CHARS = 200


class _SchemaRow(BaseModel):
    """Rows with a `schema` column (a name pydantic's BaseModel keeps for itself)."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)


class LockRow(BaseModel):
    """`db inspect locks`: one lock held (`granted`) or awaited by another session.

    JSON: {"pid", "locktype", "mode", "granted", "relation", "state", "wait_event",
    "query_age_seconds", "query"}; `query` cut and literals masked.
    """

    pid: int | None = None
    locktype: str
    mode: str
    granted: bool
    relation: str | None = None
    state: str | None = None
    wait_event: str | None = None
    query_age_seconds: int | None = None
    query: str | None = None


class BlockingRow(BaseModel):
    """`db inspect blocking`: one session waiting on another (one row per pair).

    JSON: {"blocked_pid", "blocked_query", "wait_seconds", "wait_event", "blocking_pid",
    "blocking_state", "blocking_query", "blocking_xact_age_seconds"}; queries cut, literals
    masked.
    """

    blocked_pid: int
    blocked_query: str | None = None
    wait_seconds: int | None = None
    wait_event: str | None = None
    blocking_pid: int
    blocking_state: str | None = None
    blocking_query: str | None = None
    blocking_xact_age_seconds: int | None = None


class LongRunningRow(BaseModel):
    """`db inspect long-running`: a query running (or a transaction idle inside) for at
    least --min-duration.

    JSON: {"pid", "role", "application", "state", "duration_seconds", "xact_age_seconds",
    "wait_event", "query"}.
    """

    pid: int
    role: str | None = None
    application: str | None = None
    state: str | None = None
    duration_seconds: int
    xact_age_seconds: int | None = None
    wait_event: str | None = None
    query: str | None = None


class ConnectionRow(BaseModel):
    """`db inspect connections`: client connections by role, application and state.

    JSON: {"role", "application", "state", "connections", "oldest_seconds",
    "max_connections"}.
    """

    role: str | None = None
    application: str | None = None
    state: str
    connections: int
    oldest_seconds: int | None = None
    max_connections: int


class TableSizeRow(_SchemaRow):
    """`db inspect table-sizes`: a user table, biggest first.

    JSON: {"schema", "table", "total_bytes", "table_bytes", "index_bytes", "toast_bytes",
    "rows_estimate"}.
    """

    schema_: str = Field(alias="schema")
    table: str
    total_bytes: int
    table_bytes: int
    index_bytes: int
    toast_bytes: int
    rows_estimate: int


class IndexUsageRow(_SchemaRow):
    """`db inspect index-usage`: an index with its scans since stats reset, unused first.

    JSON: {"schema", "table", "index", "scans", "size_bytes", "is_unique", "is_primary"}.
    """

    schema_: str = Field(alias="schema")
    table: str
    index: str
    scans: int
    size_bytes: int
    is_unique: bool
    is_primary: bool


class CacheHitRow(BaseModel):
    """`db inspect cache-hit`: buffer cache hits for `tables` and `indexes`.

    JSON: {"name", "hits", "reads", "hit_percent"} (`hit_percent` null before any read).
    """

    name: str
    hits: int
    reads: int
    hit_percent: float | None = None


class VacuumRow(_SchemaRow):
    """`db inspect vacuum`: dead rows and the last (auto)vacuum/analyze, most dead first.

    JSON: {"schema", "table", "live_rows", "dead_rows", "dead_percent", "last_vacuum",
    "last_autovacuum", "last_analyze", "last_autoanalyze", "vacuum_count",
    "autovacuum_count"}.
    """

    schema_: str = Field(alias="schema")
    table: str
    live_rows: int
    dead_rows: int
    dead_percent: float | None = None
    last_vacuum: datetime | None = None
    last_autovacuum: datetime | None = None
    last_analyze: datetime | None = None
    last_autoanalyze: datetime | None = None
    vacuum_count: int
    autovacuum_count: int


# section -> (SQL function, row model, fields whose text is a query to mask)
SECTIONS: dict[str, tuple[str, type[BaseModel], tuple[str, ...]]] = {
    "locks": ("dbops_inspect_locks", LockRow, ("query",)),
    "blocking": ("dbops_inspect_blocking", BlockingRow, ("blocked_query", "blocking_query")),
    "long-running": ("dbops_inspect_long_running", LongRunningRow, ("query",)),
    "connections": ("dbops_inspect_connections", ConnectionRow, ()),
    "table-sizes": ("dbops_inspect_table_sizes", TableSizeRow, ()),
    "index-usage": ("dbops_inspect_index_usage", IndexUsageRow, ()),
    "cache-hit": ("dbops_inspect_cache_hit", CacheHitRow, ()),
    "vacuum": ("dbops_inspect_vacuum", VacuumRow, ()),
}


class InspectReport(BaseModel):
    """`db inspect all -o json`: every section's rows under its name, `-` written `_`:
    {"locks", "blocking", "long_running", "connections", "table_sizes", "index_usage",
    "cache_hit", "vacuum"}."""

    locks: list[LockRow]
    blocking: list[BlockingRow]
    long_running: list[LongRunningRow]
    connections: list[ConnectionRow]
    table_sizes: list[TableSizeRow]
    index_usage: list[IndexUsageRow]
    cache_hit: list[CacheHitRow]
    vacuum: list[VacuumRow]

    def by_section(self) -> dict[str, list[BaseModel]]:
        """section name (as on the command line) -> rows, in SECTIONS order."""
        return {name: getattr(self, name.replace("-", "_")) for name in SECTIONS}


def columns(name: str) -> list[str]:
    """The JSON field names of a section's rows, in order (headers for csv and tables)."""
    model = SECTIONS[name][1]
    return [field.alias or key for key, field in model.model_fields.items()]


def section(
    *, store: Store, name: str, min_duration_seconds: int = 60, query_chars: int = QUERY_CHARS
) -> list[BaseModel]:
    """The rows of one section (`name` as on the command line)."""
    if name not in SECTIONS:
        raise UsageError(f"unknown section {name!r}: use one of {', '.join(SECTIONS)}, all")
    if min_duration_seconds < 0:
        raise UsageError("--min-duration must be 0 seconds or more")
    function, model, query_fields = SECTIONS[name]
    params = {"p_min_seconds": min_duration_seconds} if name == "long-running" else {}
    rows = []
    for row in store.call(function, params):
        for field in query_fields:
            row[field] = mask_sql(row.get(field), limit=query_chars)
        for key in ("hit_percent", "dead_percent"):
            if row.get(key) is not None:
                row[key] = float(row[key])
        rows.append(model.model_validate(row))
    return rows


def inspect_all(*, store: Store, min_duration_seconds: int = 60) -> InspectReport:
    """Every section, one call each (each in its own read-only transaction)."""
    return InspectReport.model_validate(
        {
            name.replace("-", "_"): section(
                store=store, name=name, min_duration_seconds=min_duration_seconds
            )
            for name in SECTIONS
        }
    )
