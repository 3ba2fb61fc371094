"""Sandbox scenarios: `incident` (everything that goes wrong) and `clean`, seeded.

A scenario is planned in Python with a seeded RNG (`plan`, `scenarios`: ages, shapes,
counts) and written in a handful of bulk statements: every table's rows go in as one
`jsonb_to_recordset` parameter, in one transaction. Times are ages in seconds applied to the
database's `now()`, so the data is always fresh relative to the moment it is seeded. Queue
messages go out in batches of 10.

Seeding wipes the application tables, dbops' own state about them (recoveries and their
outbox, recovery runs, stored audit runs, the action log, DLQ monitor state, rate-limit
blocks and overrides) and both sandbox queues. `run()` (`dbops sandbox seed`) also removes
the sandbox queues' redrive journals and draws fresh ids each time (`fresh_ids`), so every
re-seed gives the same documented scenario again: nothing dbops remembers refers to the
new rows. It only ever runs against the sandbox's own servers (see `run()`), never the
configured environment.

The scenarios fit whichever application schema the database has (`shape.read_shape()` reads
it from the catalog): on the production-shaped `legacy` variant, customer ids are UUIDs
(uuid5 of the readable name, which goes to `business_name`), statuses the jobs check
constraint does not allow become the nearest one it does (`cancelled` -> `failed`), some
history rows are legacy transitions (`status_from`/`status_to`, no event, no details), and
the extra columns get plausible values. The standard variant's data is unchanged.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from dbops.errors import RemoteError
from dbops.ports import OutgoingMessage, Queues
from dbops.sandbox import SchemaName
from dbops.sandbox.plan import (
    DEFAULT_SEED,
    MIN,
    OFFENDER_ENDPOINT,
    OFFENDER_IP,
    OFFENDER_REQUESTS,
    Plan,
    idempotency_key,
    result_factors,
)
from dbops.sandbox.scenarios import PLANNERS, fit, plan_clean, plan_incident
from dbops.sandbox.shape import (
    JOB_EXTRAS,
    RESULT_EXTRAS,
    WORKER_EXTRAS,
    Shape,
    customer_uuid,
    read_shape,
)

if TYPE_CHECKING:
    from pathlib import Path

    from dbops.adapters.postgres import PostgresStore

# Kept importable from here (tests, runbooks and the demo use `seed.X`).
__all__ = [
    "DEFAULT_SEED",
    "OFFENDER_ENDPOINT",
    "OFFENDER_IP",
    "OFFENDER_REQUESTS",
    "Scenario",
    "SeedResult",
    "Shape",
    "customer_uuid",
    "idempotency_key",
    "plan_clean",
    "plan_incident",
    "read_shape",
    "result_factors",
    "run",
    "seed",
    "write",
]

Scenario = Literal["incident", "clean"]
APP_TABLES = "job_results, worker_heartbeats, queue_history, rate_limit_requests, jobs"
# dbops' own state about the application's rows, reset with them when installed: the
# recovery history and outbox, recovery runs, audit runs, the action log, DLQ monitor
# state, rate-limit blocks and temporary overrides (the rules themselves are kept).
DBOPS_STATE_TABLES = (
    "dbops_job_recoveries",
    "dbops_job_runs",
    "dbops_audit_runs",
    "dbops_action_log",
    "dbops_dlq_monitor_state",
    "dbops_rate_limit_blocks",
    "dbops_rate_limit_overrides",
)


class SeedResult(BaseModel):
    """`dbops sandbox seed -o json`: what was written (counts by construction).

    `schema` is the sandbox's schema variant (`standard` or `legacy`; null when seeded
    outside the sandbox); `customer_ids` is `text` or `uuid` (jobs.customer_id's type);
    `statuses_mapped` names the scenario statuses the jobs check constraint does not allow
    and what was written instead (e.g. `{"cancelled": "failed"}`); `legacy_history_rows`
    counts history rows written as `status_from`/`status_to` transitions without an event;
    `fresh_ids` is true when the ids were drawn afresh (`dbops sandbox seed` always does:
    the same scenario, new ids).
    """

    model_config = ConfigDict(
        serialize_by_alias=True, validate_by_name=True, validate_by_alias=True
    )

    scenario: Scenario
    schema_name: SchemaName | None = Field(default=None, alias="schema")
    customer_ids: Literal["text", "uuid"] = "text"
    statuses_mapped: dict[str, str] = {}
    legacy_history_rows: int = 0
    seed: int
    fresh_ids: bool = False
    jobs: int
    jobs_by_status: dict[str, int]
    job_results: int
    results_stuck_submitting: int
    workers: int
    live_workers: int
    dead_workers_holding_jobs: int
    stale_jobs: int
    orphaned_pending_jobs: int
    long_running_job_id: str | None = None
    queue_history_events: int
    rate_limit_requests: int
    rate_limit_offender: str | None = None
    main_queue_messages: int
    dlq_messages: int
    elapsed_seconds: float


# --------------------------------------------------------------------------- writing
# The extra columns (`{extra_columns}` ...) are filled in from JOB_EXTRAS etc. for the
# columns the table has (our own names, never user input); empty on the standard schema.
_INSERT_JOBS = """
insert into jobs (id, customer_id, package_size, priority_level, status, created_at,
                  updated_at, started_at, completed_at, error_message, metadata{extra_columns})
select r.id, r.customer_id, r.package_size, r.priority_level, r.status,
       now() - make_interval(secs => r.created_age),
       now() - make_interval(secs => r.updated_age),
       now() - make_interval(secs => r.started_age),
       now() - make_interval(secs => r.completed_age),
       r.error_message, coalesce(r.metadata, '{{}}'::jsonb){extra_values}
from jsonb_to_recordset(%(rows)s) as r(
    id uuid, customer_id {customer_type}, package_size int, priority_level int, status text,
    created_age float8, updated_age float8, started_age float8, completed_age float8,
    error_message text, metadata jsonb{extra_types})
"""

_INSERT_RESULTS = """
insert into job_results (id, job_id, directory_name, status, idempotency_key, error_message,
                         created_at, updated_at{extra_columns})
select r.id, r.job_id, r.directory_name, r.status, r.idempotency_key, r.error_message,
       now() - make_interval(secs => r.created_age),
       now() - make_interval(secs => r.updated_age){extra_values}
from jsonb_to_recordset(%(rows)s) as r(
    id uuid, job_id uuid, directory_name text, status text, idempotency_key text,
    error_message text, created_age float8, updated_age float8{extra_types})
"""

_INSERT_WORKERS = """
insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                               last_heartbeat{extra_columns})
select r.worker_id, r.queue_name, r.status, r.current_job_id,
       now() - make_interval(secs => r.beat_age){extra_values}
from jsonb_to_recordset(%(rows)s) as r(
    worker_id uuid, queue_name text, status text, current_job_id uuid,
    beat_age float8{extra_types})
"""

_INSERT_EVENTS = """
insert into queue_history (job_id, event, details, worker_id, created_at)
select r.job_id, r.event, coalesce(r.details, '{}'::jsonb), r.worker_id,
       now() - make_interval(secs => r.age)
from jsonb_to_recordset(%(rows)s) as r(
    job_id uuid, event text, details jsonb, worker_id uuid, age float8)
order by r.age desc
"""

# Legacy history: transition rows keep event and details null.
_INSERT_EVENTS_LEGACY = """
insert into queue_history (job_id, event, details, worker_id, created_at, status_from, status_to)
select r.job_id, r.event,
       case when r.status_to is null then coalesce(r.details, '{}'::jsonb) end,
       r.worker_id, now() - make_interval(secs => r.age), r.status_from, r.status_to
from jsonb_to_recordset(%(rows)s) as r(
    job_id uuid, event text, details jsonb, worker_id uuid, age float8,
    status_from text, status_to text)
order by r.age desc
"""


def _with_extras(template: str, shape: Shape, table: str, extras: Mapping[str, str]) -> str:
    present = [name for name in extras if shape.has(table, name)]
    return template.format(
        extra_columns="".join(f", {name}" for name in present),
        extra_values="".join(f", r.{name}" for name in present),
        extra_types="".join(f", {name} {extras[name]}" for name in present),
        customer_type=shape.customer_type,
    )


_INSERT_RATE = """
insert into rate_limit_requests (identifier, endpoint, created_at)
select r.identifier, r.endpoint, now() - make_interval(secs => r.age)
from jsonb_to_recordset(%(rows)s) as r(identifier text, endpoint text, age float8)
order by r.age desc
"""


_INSERT_DENIALS = """
insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied)
select date_trunc('minute', now()) - make_interval(mins => d.minutes_ago),
       d.identifier, d.endpoint, d.denied
from jsonb_to_recordset(%(rows)s) as d(minutes_ago int, identifier text, endpoint text, denied int)
"""


def _empty_queue(queues: Queues, url: str) -> None:
    try:
        queues.purge(url)
        return
    except RemoteError as exc:
        if "PurgeQueueInProgress" not in exc.message:
            raise
    # Purged less than 60 s ago (strict implementations): drain what is visible.
    idle = 0
    while idle < 2:
        got = queues.receive(url, max_messages=10, visibility_timeout=60)
        if not got:
            idle += 1
            continue
        idle = 0
        queues.delete_batch(url, {str(i): m.receipt_handle for i, m in enumerate(got)})


def _send_all(queues: Queues, url: str, messages: Sequence[OutgoingMessage]) -> None:
    for start in range(0, len(messages), 10):
        batch = [
            m.model_copy(update={"id": str(i)}) for i, m in enumerate(messages[start : start + 10])
        ]
        result = queues.send_batch(url, batch)
        if result.failed:
            first = next(iter(result.failed.values()))
            raise RemoteError(
                f"seeding {url.rsplit('/', 1)[-1]}: {len(result.failed)} sends failed: {first}"
            )


def write(
    plan: Plan,
    *,
    store: PostgresStore,
    queues: Queues,
    main_queue_url: str,
    dlq_url: str,
) -> None:
    """Wipe the app tables, dbops' state about them and the queues, then write the plan
    (fitted to its shape)."""
    shape = plan.shape
    with store.connection().transaction():
        store.query(f"truncate table {APP_TABLES} restart identity cascade")
        _reset_dbops_state(store)
        store.query(_with_extras(_INSERT_JOBS, shape, "jobs", JOB_EXTRAS), {"rows": plan.jobs})
        store.query(
            _with_extras(_INSERT_RESULTS, shape, "job_results", RESULT_EXTRAS),
            {"rows": plan.results},
        )
        store.query(
            _with_extras(_INSERT_WORKERS, shape, "worker_heartbeats", WORKER_EXTRAS),
            {"rows": plan.workers},
        )
        events_sql = _INSERT_EVENTS_LEGACY if shape.legacy_history else _INSERT_EVENTS
        store.query(events_sql, {"rows": plan.events})
        store.query(_INSERT_RATE, {"rows": plan.rate})
        # dbops' own 429 counters (from the ratelimit migration), when installed.
        if store.query("select to_regclass('dbops_rate_limit_denials') as t")[0]["t"]:
            store.query("delete from dbops_rate_limit_denials")
            store.query(_INSERT_DENIALS, {"rows": plan.denials})
    _empty_queue(queues, main_queue_url)
    _empty_queue(queues, dlq_url)
    _send_all(queues, main_queue_url, plan.main)
    _send_all(queues, dlq_url, plan.dlq)


def _reset_dbops_state(store: PostgresStore) -> None:
    """Empty dbops' own tables about the application's rows (those installed)."""
    found = store.query(
        "select t from jsonb_array_elements_text(%(tables)s) as t where to_regclass(t) is not null",
        {"tables": list(DBOPS_STATE_TABLES)},
    )
    tables = ", ".join(str(r["t"]) for r in found)  # names from DBOPS_STATE_TABLES only
    if tables:
        store.query(f"truncate table {tables} restart identity")


def remove_redrive_journals(*queue_urls: str, directory: Path | None = None) -> list[str]:
    """Remove the redrive journals of `queue_urls` (what an old redrive left to settle
    refers to messages a re-seed purged). Returns the files removed."""
    from dbops.services.redrive.journal import default_directory, journal_path

    folder = directory if directory is not None else default_directory()
    removed = []
    for url in queue_urls:
        path = journal_path(folder, url)
        for candidate in (path, path.with_suffix(".tmp")):
            if candidate.exists():
                candidate.unlink()
                removed.append(str(candidate))
    return removed


def seed(
    *,
    store: PostgresStore,
    queues: Queues,
    main_queue_url: str,
    dlq_url: str,
    scenario: Scenario = "incident",
    seed: int = DEFAULT_SEED,
    schema: SchemaName | None = None,
    fresh_ids: bool = False,
) -> SeedResult:
    """Seed `scenario` into whatever application schema the database has.

    `schema` only labels the result (the sandbox's variant); the shape is read from the
    catalog. With `fresh_ids`, every id is new (the scenario's shapes, ages and counts are
    still the seed's); without, the same seed gives the same ids.
    """
    started = time.perf_counter()
    shape = read_shape(store)
    salt = secrets.randbits(128) if fresh_ids else 0
    plan = PLANNERS[scenario](seed, shape=shape, id_salt=salt)
    mapped, legacy_rows = fit(plan)
    write(plan, store=store, queues=queues, main_queue_url=main_queue_url, dlq_url=dlq_url)
    live = [w for w in plan.workers if w["beat_age"] < 2 * MIN]
    dead_holding = [
        w for w in plan.workers if w["beat_age"] >= 2 * MIN and w["current_job_id"] is not None
    ]
    return SeedResult(
        scenario=scenario,
        schema=schema,
        customer_ids=shape.customer_type,
        statuses_mapped=mapped,
        legacy_history_rows=legacy_rows,
        seed=seed,
        fresh_ids=fresh_ids,
        jobs=len(plan.jobs),
        jobs_by_status=dict(sorted(Counter(j["status"] for j in plan.jobs).items())),
        job_results=len(plan.results),
        results_stuck_submitting=plan.stuck_submitting,
        workers=len(plan.workers),
        live_workers=len(live),
        dead_workers_holding_jobs=len(dead_holding),
        stale_jobs=plan.stale_jobs,
        orphaned_pending_jobs=plan.orphaned,
        long_running_job_id=plan.long_running_job_id,
        queue_history_events=len(plan.events),
        rate_limit_requests=len(plan.rate),
        rate_limit_offender=plan.offender,
        main_queue_messages=len(plan.main),
        dlq_messages=len(plan.dlq),
        elapsed_seconds=round(time.perf_counter() - started, 3),
    )


def run(
    scenario: Scenario = "incident",
    *,
    seed_value: int = DEFAULT_SEED,
    schema: SchemaName | None = None,
) -> SeedResult:
    """Seed the running sandbox (its own servers, whatever the environment points at).

    Fresh ids every time, and the sandbox queues' redrive journals removed: each re-seed
    is the documented scenario again. `schema` (default: the variant the sandbox runs) must
    be the variant in use: another one is refused (RefusedError), as `dbops sandbox up
    --schema` is what switches.
    """
    from dbops.sandbox import runtime

    with runtime.locked(), runtime.connected(schema) as conn:
        main_url, dlq_url = conn.state.main_queue_url, conn.state.dlq_url
        assert main_url and dlq_url
        result = seed(
            store=conn.store,
            queues=conn.queues,
            main_queue_url=main_url,
            dlq_url=dlq_url,
            scenario=scenario,
            seed=seed_value,
            schema=conn.state.schema_name,
            fresh_ids=True,
        )
        remove_redrive_journals(main_url, dlq_url)
        return result
