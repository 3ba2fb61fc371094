"""Benchmark: bulk `jobs retry` of 10,000 failed jobs by filter (issue 15 item 3).

Run: `uv run python -m benchmarks.bench_bulk_retry` (or `uv run python -m benchmarks
bulk_retry`): an embedded pgserver in a temp folder and the local SQS sink of bench_jobs,
or DBOPS_BENCH_DATABASE_URL / DBOPS_BENCH_SQS_ENDPOINT (e.g. LocalStack). Not part of the
test suite; prints the figures of one run (BENCH_RETRY, BENCH_OTHER_JOBS resize it).

Measured, through the service the CLI calls (`jobs.retry_preview` then `jobs.retry`):
database round trips (counted at the Store port, per function) and SQS calls (counted by a
botocore event hook on the real client, per operation), per 1,000 jobs and per 10 jobs;
wall time of the preview and of the retry. The budget: at most one database round trip per
1,000 jobs for the work that grows with the jobs (plus a fixed few per run) and one SQS
call per 10 jobs. Bytecode is compiled before timing (PYTHONDONTWRITEBYTECODE would
otherwise make every import compile).
"""

from __future__ import annotations

import compileall
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

import dbops
from benchmarks._database import scratch_database, server_url
from benchmarks.bench_jobs import CountingStore, sqs_endpoint
from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.services import jobs, migrations

RETRY = int(os.environ.get("BENCH_RETRY", "10000"))
OTHER = int(os.environ.get("BENCH_OTHER_JOBS", "90000"))
# Calls whose number does not grow with the jobs: preview (match, outbox state), run start,
# outbox check and take, release, final outbox state.
FIXED = {
    "dbops_jobs_match",
    "dbops_jobs_outbox_unsent",
    "dbops_jobs_run_start",
    "dbops_jobs_outbox_take",
    "dbops_jobs_outbox_release",
}


def seed(conn: psycopg.Connection[Any]) -> None:
    """RETRY failed jobs of customer `acme` with a timeout error within the last 6 hours,
    among OTHER jobs (completed, pending, and failed of other customers or errors)."""
    conn.execute(
        """
        insert into jobs (customer_id, package_size, priority_level, status, created_at,
                          updated_at, started_at, completed_at, error_message, metadata)
        select 'cust-' || (g %% 500), 5, 3,
               case when g %% 10 = 0 then 'failed' when g %% 7 = 0 then 'pending'
                    else 'completed' end,
               t, t + interval '3 minutes', t + interval '10 seconds',
               t + interval '3 minutes', case when g %% 10 = 0 then 'out of memory' end,
               '{"source": "api"}'::jsonb
        from (select g, now() - make_interval(secs => (g %% 86400) + 600) as t
              from generate_series(1, %(n)s) g) s
        """,
        {"n": OTHER},
    )
    conn.execute(
        """
        insert into jobs (customer_id, package_size, priority_level, status, created_at,
                          updated_at, started_at, error_message, metadata)
        select 'acme', 5, 3, 'failed', now() - interval '5 hours',
               now() - make_interval(secs => 600 + g), now() - interval '5 hours',
               'Timeout after ' || (g %% 60) || 's talking to the registry',
               '{"source": "api"}'::jsonb
        from generate_series(1, %(n)s) g
        """,
        {"n": RETRY},
    )
    conn.execute("vacuum analyze jobs")


def main() -> None:
    compileall.compile_dir(str(Path(dbops.__file__).parent), quiet=1)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    started = time.perf_counter()
    with server_url() as url, scratch_database(url) as dsn:
        store = PostgresStore(dsn)
        migrations.migrate(store=store, which="app")
        migrations.migrate(store=store, which="dbops")
        store.close()
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            t0 = time.perf_counter()
            seed(conn)
            total = conn.execute("select count(*) as n from jobs").fetchone()["n"]
            version = conn.execute("show server_version").fetchone()["server_version"]
        print(f"seeded {total:,} jobs ({RETRY:,} to retry) in {time.perf_counter() - t0:.1f} s")
        print(f"PostgreSQL {version}")

        with sqs_endpoint() as (endpoint, sqs_kind):
            queues = SqsQueues(region="us-east-1", endpoint=endpoint)
            queue_url = queues.create_queue(f"bench-{uuid.uuid4().hex[:8]}")
            sqs_calls: Counter[str] = Counter()

            def count_call(event_name: str, **_: Any) -> None:
                sqs_calls[event_name.rsplit(".", 1)[-1]] += 1

            queues.client.meta.events.register("before-call.sqs", count_call)
            counting = CountingStore(PostgresStore(dsn))
            chosen = jobs.job_filter(
                customer="acme", error_like="timeout", since_seconds=6 * 3600, limit=RETRY
            )
            t0 = time.perf_counter()
            preview = jobs.retry_preview(store=counting, filter=chosen)
            preview_seconds = time.perf_counter() - t0
            preview_calls = sum(counting.calls.values())
            t0 = time.perf_counter()
            result = jobs.retry(
                store=counting,
                queues=queues,
                queue_url=queue_url,
                operator="bench",
                preview=preview,
            )
            retry_seconds = time.perf_counter() - t0
            queues.client.meta.events.unregister("before-call.sqs", count_call)
            counting.close()
            queues.client.delete_queue(QueueUrl=queue_url)

    calls = counting.calls
    total_db = sum(calls.values())
    growing = sum(n for f, n in calls.items() if f not in FIXED)
    sends = sqs_calls["SendMessageBatch"]
    per_k = 1000 / max(1, result.retried)
    print(f"\n== bulk retry of {RETRY:,} failed jobs (filter: customer, error, window)")
    print(
        f"preview: matched {len(preview.jobs):,} in {preview_seconds:.2f} s, "
        f"{preview_calls} database round trips"
    )
    print(
        f"retry: retried {result.retried:,}, sent {result.sent:,}, failed sends "
        f"{result.failed_sends}, skipped {result.skipped} in {retry_seconds:.1f} s "
        f"({result.retried / retry_seconds:,.0f} jobs/s)"
    )
    print(f"  SQS endpoint: {sqs_kind}; SQS calls: {dict(sqs_calls)}")
    print(f"  database round trips (preview + retry): {dict(calls)}")
    seconds = {f: round(s * 1000) for f, s in counting.seconds.items()}
    print(f"  client-side ms in database calls: {seconds}")
    print(
        f"  -> database round trips: {total_db} in all, {total_db * per_k:.2f} per 1,000 jobs; "
        f"{growing} grow with the jobs ({growing * per_k:.2f} per 1,000: one "
        f"dbops_jobs_retry per chunk of {jobs.DEFAULT_CHUNK} and one final record), "
        f"{total_db - growing} fixed per run"
    )
    print(
        f"  -> SendMessageBatch per 10 jobs: {sends / result.retried * 10:.3f}; all SQS calls "
        f"per 10 jobs: {sum(sqs_calls.values()) / result.retried * 10:.4f}"
    )
    chunks = -(-result.retried // jobs.DEFAULT_CHUNK)
    print("\n== budgets (issue 15)")
    print(
        f"  <= 1 growing round trip per 1,000 jobs (+1 final record): "
        f"{'ok' if growing <= chunks + 1 else 'MISSED'}"
    )
    print(f"  <= 1 SQS call per 10 jobs:  {'ok' if sends * 10 <= result.retried else 'MISSED'}")
    print(f"  every job sent:              {'ok' if result.sent == RETRY else 'MISSED'}")
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
