"""Benchmark: the whole `dbops audit` on 1,000,000 jobs and 1,000,000 rate-limit rows.

Run: `uv run python -m benchmarks.bench_audit` (an embedded pgserver in a temp folder), or
point DBOPS_BENCH_DATABASE_URL at a server you own (a scratch database is created and
dropped there). Not part of the test suite; prints the figures of one run:

- database time of the whole audit (ping + the single `dbops_audit_observe` round trip,
  measured by the client), median and worst of several runs; target < 2 s;
- server-side time per check (each observation times itself with clock_timestamp()),
  and the slowest three checks.

Queues are not configured here (the SQS side is a handful of GetQueueAttributes calls and
does not depend on data volume), so queue checks report `skipped`.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

import psycopg

from benchmarks._database import scratch_database, server_url
from dbops.adapters.postgres import PostgresStore
from dbops.services import migrations
from dbops.services.audit import run_audit
from dbops.settings import Settings

JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
RATE_ROWS = int(os.environ.get("BENCH_RATE_ROWS", "1000000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


SEED = """
-- jobs over 30 days: 88 in 100 completed, 2 legacy 'complete', 5 failed, 3 pending,
-- 1 in progress, 1 cancelled. 1 in 10 in-progress jobs is stale.
insert into jobs (id, customer_id, package_size, priority_level, status, created_at,
                  updated_at, started_at, completed_at, error_message)
select gen_random_uuid(), 'cust_' || (i %% 500), 1 + i %% 100, 1 + i %% 5, s.status,
       now() - make_interval(secs => s.age + 120),
       now() - make_interval(secs => s.age),
       now() - make_interval(secs => s.age + 60),
       case when s.status in ('completed', 'complete') then now() - make_interval(secs => s.age)
       end,
       case when s.status = 'failed' then 'TimeoutError: upstream' end
from generate_series(1, %(jobs)s) i
cross join lateral (
    select case
        when i %% 100 < 88 then 'completed'
        when i %% 100 < 90 then 'complete'
        when i %% 100 < 95 then 'failed'
        when i %% 100 < 98 then 'pending'
        when i %% 100 < 99 then 'in_progress'
        else 'cancelled' end as status,
        case
        when i %% 100 = 98 and i %% 1000 < 100 then 3600.0           -- stale in progress
        when i %% 100 = 98 then (i %% 90)::float8                    -- fresh in progress
        when i %% 100 in (95, 96, 97) and i %% 5000 < 50 then 7200.0 -- orphan candidates
        when i %% 100 in (95, 96, 97) then (i %% 600)::float8        -- young pending
        else (i::float8 * 2592000 / %(jobs)s) end as age
) s;

insert into job_results (job_id, directory_name, status, idempotency_key, created_at,
                         updated_at)
select j.id, 'inbox', case when n %% 2000 = 0 then 'submitting' else 'submitted' end,
       md5(j.id::text), j.updated_at, j.updated_at
from (select id, updated_at, row_number() over () as n from jobs
      where status in ('completed', 'complete', 'in_progress') limit 300000) j;

insert into worker_heartbeats (worker_id, queue_name, status, current_job_id, last_heartbeat)
select gen_random_uuid(), 'jobs', 'running', j.id,
       case when j.n <= 5 then now() - interval '10 minutes' else now() - interval '5 seconds' end
from (select id, row_number() over () as n from jobs where status = 'in_progress'
      order by updated_at limit 50) j;

insert into queue_history (job_id, event, created_at)
select id, 'queue_claimed', updated_at + interval '1 second' from jobs where status = 'pending'
  and updated_at > now() - interval '1 hour';

-- rate-limit log: RATE_ROWS requests over the last 48 h, in time order (half overdue)
insert into rate_limit_requests (identifier, endpoint, created_at)
select case when i %% 4 = 0 then 'api_key:k' || (i %% 20000)
            else 'ip:10.0.' || (i / 256 %% 256) || '.' || (i %% 256) end,
       (array['/api/jobs', '/api/jobs/status', '/api/public/search'])[1 + i %% 3],
       now() - make_interval(secs => 172800.0 * (%(rate)s - i) / %(rate)s)
from generate_series(1, %(rate)s) i;

insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied)
select date_trunc('minute', now()) - make_interval(mins => m), 'ip:10.0.0.1', '/api/jobs', 3
from generate_series(0, 59) m;

insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state, created_at)
select id, 'stale', 'requeued', 1, 'bench', 'sent', now() - interval '1 hour'
from jobs where status = 'pending' limit 2000;
"""


def build(url: str) -> None:
    store = PostgresStore(url, statement_timeout_ms=0)
    try:
        migrations.migrate(store=store, which="app")
        migrations.migrate(store=store, which="dbops")
    finally:
        store.close()
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for statement in SEED.split(";\n"):
                if statement.strip():
                    conn.execute(statement.encode(), {"jobs": JOBS, "rate": RATE_ROWS})
        conn.execute("vacuum analyze")
        counts = conn.execute(
            "select (select count(*) from jobs), (select count(*) from rate_limit_requests),"
            " (select count(*) from job_results)"
        ).fetchone()
    assert counts is not None
    print(
        f"seeded {counts[0]:,} jobs, {counts[1]:,} rate-limit rows, {counts[2]:,} job results "
        f"in {time.perf_counter() - started:.1f} s"
    )


def measure(url: str) -> None:
    settings = Settings()
    store = PostgresStore(url)
    try:
        run_audit(store=store, queues=None, settings=settings, save=False)  # warm-up
        totals: list[float] = []
        server: list[float] = []
        per_check: dict[str, list[float]] = {}
        report: Any = None
        for _ in range(RUNS):
            report = run_audit(store=store, queues=None, settings=settings, save=False)
            totals.append(report.database_ms)
            server.append(
                sum(
                    c.elapsed_ms or 0.0
                    for c in report.checks
                    if c.area != "queue" and c.id != "db.reachable"
                )
            )
            for c in report.checks:
                if c.elapsed_ms is not None:
                    per_check.setdefault(c.id, []).append(c.elapsed_ms)
    finally:
        store.close()
    assert report is not None
    with psycopg.connect(url) as conn:
        version = conn.execute("show server_version").fetchone()
    print(
        f"PostgreSQL {version[0] if version else '?'} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"verdict on the generated data: {report.verdict} (score {report.score})")
    median, worst = statistics.median(totals), max(totals)
    print(
        f"audit database time (client, ping + 1 observe call), {RUNS} runs: "
        f"median {median:.1f} ms, worst {worst:.1f} ms "
        f"({'under' if worst < 2000 else 'OVER'} the 2 s target; "
        f"{2000 / median:.1f}x headroom)"
    )
    print(f"server-side time of all database checks: median {statistics.median(server):.1f} ms")
    ranked = sorted(per_check.items(), key=lambda kv: -statistics.median(kv[1]))
    print("slowest three checks (median server time):")
    for check_id, values in ranked[:3]:
        print(f"  {check_id:32} {statistics.median(values):8.1f} ms")
    print("all database checks:")
    for check_id, values in ranked:
        print(f"  {check_id:32} {statistics.median(values):8.2f} ms")


def main() -> None:
    with server_url() as url, scratch_database(url) as db_url:
        build(db_url)
        measure(db_url)


if __name__ == "__main__":
    main()
