"""The application schema as the catalog describes it, and what the seeder adapts to it.

`read_shape()` reads the columns, the customer id type and the statuses the jobs check
constraint allows; `Shape.fit_status()` maps a status the constraint refuses to the nearest
one it allows. Legacy customers are UUIDs derived from the readable name.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from dbops.errors import ConfigError

if TYPE_CHECKING:
    from dbops.adapters.postgres import PostgresStore

# Legacy customers are UUIDs: derived from the readable name, so they are stable.
CUSTOMER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://dbops.dev/sandbox/customers")

# A status the jobs check constraint refuses becomes the first of these it allows.
STATUS_FALLBACKS: dict[str, tuple[str, ...]] = {
    "cancelled": ("failed",),
    "completed": ("complete",),
    "complete": ("completed",),
}
# History events that legacy rows record as a status transition (status_from, status_to);
# None stands for the job's own (final) status.
LEGACY_TRANSITIONS: dict[str, tuple[str, str | None]] = {
    "started": ("pending", "in_progress"),
    "completed": ("in_progress", None),
    "failed": ("in_progress", "failed"),
    "cancelled": ("pending", None),
}
LEGACY_HISTORY_EVERY = 3  # every third job's lifecycle is recorded the legacy way

# Optional application columns the seeder fills when the table has them: name -> type.
JOB_EXTRAS = {
    "business_name": "text",
    "email": "text",
    "directory_limit": "int",
    "package_type": "text",
}
RESULT_EXTRAS = {"payload": "jsonb", "response_log": "jsonb"}
WORKER_EXTRAS = {"queue_depth": "int", "processing_count": "int", "metadata": "jsonb"}


@dataclass(frozen=True)
class Shape:
    """The application schema as the catalog describes it: what the seeder adapts to."""

    customer_type: Literal["text", "uuid"] = "text"
    # Statuses the jobs check constraint allows; None when it does not restrict them.
    statuses: frozenset[str] | None = None
    # table -> its columns, and the nullable ones
    columns: Mapping[str, frozenset[str]] = field(default_factory=dict)
    nullable: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, frozenset())

    @property
    def legacy_history(self) -> bool:
        """queue_history takes legacy rows: status_from/status_to, event and details null."""
        return (
            self.has("queue_history", "status_from")
            and self.has("queue_history", "status_to")
            and "event" in self.nullable.get("queue_history", frozenset())
            and "details" in self.nullable.get("queue_history", frozenset())
        )

    def fit_status(self, status: str) -> str:
        """`status`, or the nearest one the jobs check constraint allows."""
        if self.statuses is None or status in self.statuses:
            return status
        for alternative in STATUS_FALLBACKS.get(status, ()):
            if alternative in self.statuses:
                return alternative
        allowed = ", ".join(sorted(self.statuses))
        raise ConfigError(
            f"cannot seed '{status}' jobs: the jobs status check allows only {allowed}"
        )


STANDARD_SHAPE = Shape()
_CHECK_LITERAL = re.compile(r"'((?:[^']|'')*)'")

_SHAPE_COLUMNS = """
select c.table_name::text as table_name, c.column_name::text as column_name,
       c.udt_name::text as udt_name, c.is_nullable = 'YES' as nullable
from information_schema.columns c
where c.table_schema = current_schema()
  and c.table_name in ('jobs', 'job_results', 'worker_heartbeats', 'queue_history')
"""

_SHAPE_STATUS_CHECKS = """
select pg_get_constraintdef(k.oid) as definition
from pg_constraint k
join pg_attribute a on a.attrelid = k.conrelid and a.attnum = any(k.conkey)
where k.conrelid = to_regclass('jobs') and k.contype = 'c' and a.attname = 'status'
"""


def read_shape(store: PostgresStore) -> Shape:
    """The application tables' columns, customer id type and allowed job statuses."""
    rows = store.query(_SHAPE_COLUMNS)
    columns: dict[str, set[str]] = {}
    nullable: dict[str, set[str]] = {}
    types: dict[tuple[str, str], str] = {}
    for row in rows:
        table, column = str(row["table_name"]), str(row["column_name"])
        columns.setdefault(table, set()).add(column)
        if row["nullable"]:
            nullable.setdefault(table, set()).add(column)
        types[(table, column)] = str(row["udt_name"])
    if "jobs" not in columns:
        raise ConfigError(
            "this database has no jobs table (is DATABASE_URL right?)",
            hint="the sandbox creates it: `dbops sandbox up`",
        )
    customer = types.get(("jobs", "customer_id"), "text")
    if customer not in ("text", "varchar", "uuid"):
        raise ConfigError(f"cannot seed jobs.customer_id of type {customer} (text or uuid)")
    statuses: frozenset[str] | None = None
    for row in store.query(_SHAPE_STATUS_CHECKS):
        definition = str(row["definition"])
        if "ANY (ARRAY[" not in definition.upper():
            continue  # not a list of values: it does not restrict which statuses exist
        values = frozenset(v.replace("''", "'") for v in _CHECK_LITERAL.findall(definition))
        statuses = values if statuses is None else statuses & values
    return Shape(
        customer_type="uuid" if customer == "uuid" else "text",
        statuses=statuses,
        columns={t: frozenset(c) for t, c in columns.items()},
        nullable={t: frozenset(c) for t, c in nullable.items()},
    )


def customer_uuid(name: str) -> str:
    """The legacy schema's customer id for the readable customer `name` (stable)."""
    return str(uuid.uuid5(CUSTOMER_NAMESPACE, name))
