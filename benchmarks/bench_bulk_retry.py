"""Benchmark: bulk `jobs retry` of 10,000 failed jobs by filter (issue 15 item 3).

Run: `uv run python -m benchmarks.bench_bulk_retry` (or `uv run python -m benchmarks
bulk_retry`): an embedded pgserver in a temp folder and the local SQS sink of bench_jobs,
or DBOPS_BENCH_DATABASE_URL / DBOPS_BENCH_SQS_ENDPOINT (e.g. LocalStack). Not part of the
test suite; prints the figures of one run (BENCH_RETRY, BENCH_OTHER_JOBS resize it).

Measured, through the services the CLI calls (`jobs.retry_preview`, `jobs.retry`, and the
action-log row the CLI writes with `ActionRecorder`): database round trips (counted at the
Store port, per function, and again where the Postgres adapter really executes: a call it
must re-bind by the declared types would count twice) and SQS calls (counted by a botocore
event hook on the real client, per operation), per 1,000 jobs and per 10 jobs; wall time of
the preview and of the retry. The budget (issue 15): at most one database round trip per
1,000 jobs counting everything (preview, run, action log: 10 for 10,000 jobs) and one SQS
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
from dbops.services.actionlog import ActionRecorder

RETRY = int(os.environ.get("BENCH_RETRY", "10000"))
OTHER = int(os.environ.get("BENCH_OTHER_JOBS", "90000"))
# Calls whose number does not grow with the jobs: the preview (matching jobs and outbox
# state), the finish (last record, release, outbox state) and the action-log row.
FIXED = {"dbops_jobs_retry_preview", "dbops_jobs_outbox_finish", "dbops_action_log_write"}


class Executions:
    """Counts the statements a PostgresStore really executes (its `_call`, and the catalog
    look-up `_declared_types` when a call must be re-bound)."""

    def __init__(self, store: PostgresStore) -> None:
        self.total = 0
        for name in ("_call", "_declared_types"):
            real = getattr(store, name)
            setattr(store, name, self._counted(real))

    def _counted(self, real: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.total += 1
            return real(*args, **kwargs)

        return counted


def count_executions(store: PostgresStore) -> Executions:
    return Executions(store)


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
            executed = count_executions(counting.inner)
            chosen = jobs.job_filter(
                customer="acme", error_like="timeout", since_seconds=6 * 3600, limit=RETRY
            )
            t0 = time.perf_counter()
            preview = jobs.retry_preview(store=counting, filter=chosen)
            preview_seconds = time.perf_counter() - t0
            preview_calls = sum(counting.calls.values())
            t0 = time.perf_counter()
            # as the CLI: the run inside an action-log recorder writing one row at the end
            with ActionRecorder(
                store=counting,
                command="jobs retry",
                arguments={"filter": preview.filter.model_dump() if preview.filter else None},
                operator="bench",
            ) as recorder:
                result = jobs.retry(
                    store=counting,
                    queues=queues,
                    queue_url=queue_url,
                    operator="bench",
                    preview=preview,
                )
                recorder.counts = result.counts()
            retry_seconds = time.perf_counter() - t0
            queues.client.meta.events.unregister("before-call.sqs", count_call)
            counting.close()
            queues.client.delete_queue(QueueUrl=queue_url)

    calls = counting.calls
    total_db = sum(calls.values())
    assert recorder.written_to == "database"
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
    print(f"  database round trips (preview + retry + action log): {dict(calls)}")
    print(f"  statements the Postgres adapter executed: {executed.total}")
    seconds = {f: round(s * 1000) for f, s in counting.seconds.items()}
    print(f"  client-side ms in database calls: {seconds}")
    print(
        f"  -> database round trips: {total_db} in all, {total_db * per_k:.2f} per 1,000 jobs; "
        f"{growing} grow with the jobs ({growing * per_k:.2f} per 1,000: one "
        f"dbops_jobs_retry_step per chunk of {jobs.RETRY_CHUNK}), "
        f"{total_db - growing} fixed per run (preview, finish, action log)"
    )
    print(
        f"  -> SendMessageBatch per 10 jobs: {sends / result.retried * 10:.3f}; all SQS calls "
        f"per 10 jobs: {sum(sqs_calls.values()) / result.retried * 10:.4f}"
    )
    budget = result.retried // 1000
    all_sqs = sum(sqs_calls.values())
    print("\n== budgets (issue 15)")
    print(
        f"  <= 1 round trip per 1,000 jobs, counting everything ({max(total_db, executed.total)}"
        f" <= {budget}): {'ok' if max(total_db, executed.total) <= budget else 'MISSED'}"
    )
    print(
        f"  <= 1 SendMessageBatch per 10 jobs: {'ok' if sends * 10 <= result.retried else 'MISSED'}"
        f"; all SQS calls ({all_sqs}, with the queue check): "
        f"{'ok' if all_sqs * 10 <= result.retried else f'{all_sqs * 10 / result.retried:.4f}'}"
    )
    print(f"  every job sent:              {'ok' if result.sent == RETRY else 'MISSED'}")
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
