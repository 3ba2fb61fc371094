"""Benchmark: `dbops jobs` stale query, claim, and recover, on 1,000,000 jobs.

Run: `uv run python -m benchmarks.bench_jobs` (an embedded pgserver in a temp folder and a
local SQS sink, see `sqs_endpoint`), or point DBOPS_BENCH_DATABASE_URL at a server you own
(a scratch database is created and dropped there) and DBOPS_BENCH_SQS_ENDPOINT at an SQS
endpoint (e.g. LocalStack: `../shared/tools/localstack/sqs start`). Not part of the test
suite; prints the figures of one run (BENCH_JOBS, BENCH_STALE, BENCH_RECOVER resize it).

Measured:
1. the stale query (`dbops_jobs_stale`, inlined by the planner, so EXPLAIN shows the real
   plan) with 1,000 stale among 1,000,000 jobs: plan (must have no Seq Scan on jobs) and
   database time (EXPLAIN ANALYZE execution time, median of runs), and the same query
   without the partial index for the ratio;
2. claiming 1,000 stale jobs (`dbops_jobs_claim_stale`, rolled back and vacuumed after
   each run; median of 7);
3. `recover` of 10,000 stale jobs: SQS calls (counted by a botocore event hook on the real
   client) and database round trips (counted at the Store port), per 10 jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg.rows import dict_row

from benchmarks._database import scratch_database, server_url
from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.services import jobs, migrations

JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
STALE = int(os.environ.get("BENCH_STALE", "1000"))
FRESH_IN_PROGRESS = int(os.environ.get("BENCH_FRESH", "5000"))
RECOVER = int(os.environ.get("BENCH_RECOVER", "10000"))
RUNS = 25


@contextmanager
def sqs_endpoint() -> Iterator[tuple[str, str]]:
    """(endpoint, kind): DBOPS_BENCH_SQS_ENDPOINT (LocalStack, real SQS...), or a local sink.

    moto needs minutes for 10,000 messages, so by default the messages go to a minimal
    SQS-compatible sink (JSON protocol: CreateQueue, GetQueueAttributes, SendMessageBatch,
    DeleteQueue) that accepts and discards them. The figures counted here (calls per 10
    jobs, database round trips) are the client's and do not depend on the endpoint.
    """
    external = os.environ.get("DBOPS_BENCH_SQS_ENDPOINT")
    if external:
        yield external, "external"
        return
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", "sink"
    finally:
        server.shutdown()
        server.server_close()


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK
        # add ~40 ms to every request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        action = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        port = self.server.server_address[1]
        answer: dict[str, Any]
        if action == "CreateQueue":
            answer = {"QueueUrl": f"http://127.0.0.1:{port}/000000000000/{payload['QueueName']}"}
        elif action == "GetQueueAttributes":
            answer = {"Attributes": {"ApproximateNumberOfMessages": "0"}}
        elif action == "SendMessageBatch":
            answer = {
                "Successful": [
                    {
                        "Id": entry["Id"],
                        "MessageId": str(uuid.uuid4()),
                        "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                    }
                    for entry in payload["Entries"]
                ],
                "Failed": [],
            }
        else:
            answer = {}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def seed(conn: psycopg.Connection[Any]) -> None:
    """JOBS jobs over 30 days: STALE in progress without sign of life for 1-3 h (a third
    held by dead workers), FRESH_IN_PROGRESS in progress and alive (a live worker or a
    recent update), a few % pending/failed, the rest completed."""
    other = JOBS - STALE - FRESH_IN_PROGRESS
    conn.execute(
        """
        insert into jobs (customer_id, package_size, priority_level, status, created_at,
                          updated_at, started_at, completed_at, metadata)
        select 'cust-' || (g %% 5000), 1 + g %% 50, 1 + g %% 5,
               case when g %% 50 = 0 then 'failed' when g %% 40 = 0 then 'pending'
                    when g %% 997 = 0 then 'complete' else 'completed' end,
               t, t + interval '3 minutes', t + interval '10 seconds',
               case when g %% 50 = 0 or g %% 40 = 0 then null else t + interval '3 minutes' end,
               '{"source": "api"}'::jsonb
        from (select g, now() - make_interval(secs => (g %% 2592000) + 3600) as t
              from generate_series(1, %(n)s) g) s
        """,
        {"n": other},
    )
    conn.execute(
        """
        insert into jobs (customer_id, package_size, status, created_at, updated_at, started_at)
        select 'cust-' || g, 10, 'in_progress', now() - interval '4 hours',
               now() - make_interval(secs => 3600 + g * 7), now() - interval '4 hours'
        from generate_series(1, %(n)s) g
        """,
        {"n": STALE},
    )
    conn.execute(
        """
        insert into jobs (customer_id, package_size, status, created_at, updated_at, started_at)
        select 'cust-' || g, 10, 'in_progress', now() - interval '2 hours',
               case when g %% 2 = 0 then now() - make_interval(secs => g %% 300)
                    else now() - interval '1 hour' end,
               now() - interval '1 hour'
        from generate_series(1, %(n)s) g
        """,
        {"n": FRESH_IN_PROGRESS},
    )
    # Live workers on the fresh jobs whose row is old; dead workers on a third of the stale.
    conn.execute(
        """
        insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                                       last_heartbeat)
        select gen_random_uuid(), 'jobs', 'running', id, now() - interval '15 seconds'
        from jobs where status = 'in_progress' and updated_at = started_at
        """
    )
    conn.execute(
        """
        insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                                       last_heartbeat)
        select gen_random_uuid(), 'jobs', 'running', id, updated_at + interval '5 minutes'
        from jobs where status = 'in_progress' and updated_at < now() - interval '1 hour'
          and customer_id like '%%3'
        """
    )
    conn.execute("vacuum analyze jobs")
    conn.execute("vacuum analyze worker_heartbeats")


def explain(conn: psycopg.Connection[Any], query: str, params: Mapping[str, Any]) -> str:
    rows = conn.execute(f"explain (analyze, buffers) {query}", params).fetchall()
    return "\n".join(r["QUERY PLAN"] for r in rows)


def execution_ms(conn: psycopg.Connection[Any], query: str, params: Mapping[str, Any]) -> float:
    """Database time of one execution (EXPLAIN ANALYZE, without per-node timing)."""
    plan = conn.execute(f"explain (analyze, timing off, format json) {query}", params).fetchone()
    document = plan["QUERY PLAN"]
    return float(document[0]["Execution Time"])


def median_ms(conn: psycopg.Connection[Any], query: str, params: Mapping[str, Any]) -> float:
    for _ in range(3):
        execution_ms(conn, query, params)  # warm up
    return statistics.median(execution_ms(conn, query, params) for _ in range(RUNS))


class CountingStore:
    """The Store port, counting round trips per function."""

    def __init__(self, inner: PostgresStore) -> None:
        self.inner = inner
        self.transport = inner.transport
        self.calls: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls[function] += 1
        started = time.perf_counter()
        try:
            return self.inner.call(function, params)
        finally:
            self.seconds[function] += time.perf_counter() - started

    def ping(self) -> float:
        return self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    started = time.perf_counter()
    with server_url() as url, scratch_database(url) as dsn:
        store = PostgresStore(dsn)
        migrations.migrate(store=store, which="app")
        migrations.migrate(store=store, which="dbops")
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            t0 = time.perf_counter()
            seed(conn)
            counts = conn.execute(
                "select count(*) as n, count(*) filter (where status = 'in_progress') as ip "
                "from jobs"
            ).fetchone()
            print(
                f"seeded {counts['n']:,} jobs ({counts['ip']:,} in progress, {STALE:,} of them "
                f"stale) in {time.perf_counter() - t0:.1f} s"
            )
            server_version = conn.execute("show server_version").fetchone()["server_version"]
            print(f"PostgreSQL {server_version}\n")

            stale_query = "select * from dbops_jobs_stale(%(t)s, %(limit)s, 120)"
            found = conn.execute(stale_query, {"t": 600, "limit": 100000}).fetchall()
            assert len(found) == STALE, f"expected {STALE} stale jobs, found {len(found)}"

            print("== EXPLAIN (ANALYZE, BUFFERS) select * from dbops_jobs_stale(600, 1000, 120)")
            plan = explain(conn, stale_query, {"t": 600, "limit": 1000})
            print(plan)
            seq_scan = "Seq Scan on jobs" in plan
            print(f"\nsequential scan of jobs: {'YES (bad)' if seq_scan else 'no'}")

            # The selection alone: what the claim locks and what the audit counts.
            selection = (
                "select j.id from jobs j where j.status = 'in_progress' "
                "and j.updated_at < now() - make_interval(secs => %(t)s) and not exists ("
                "select 1 from worker_heartbeats h where h.current_job_id = j.id "
                "and h.last_heartbeat >= now() - make_interval(secs => %(t)s)) "
                "order by j.updated_at limit %(limit)s"
            )
            selection_ms = median_ms(conn, selection, {"t": 600, "limit": 1000})
            counted = (
                "select count(*) from jobs j where j.status = 'in_progress' "
                "and j.updated_at < now() - make_interval(secs => %(t)s)"
            )
            counted_ms = median_ms(conn, counted, {"t": 600})
            stale_1000 = median_ms(conn, stale_query, {"t": 600, "limit": 1000})
            stale_100 = median_ms(conn, stale_query, {"t": 600, "limit": 100})
            count_query = "select count(*) from dbops_jobs_stale(%(t)s, %(limit)s, 120)"
            stale_count = median_ms(conn, count_query, {"t": 600, "limit": 100000})
            with conn.transaction():
                conn.execute("drop index jobs_in_progress_activity_idx")
                no_index = statistics.median(
                    execution_ms(conn, stale_query, {"t": 600, "limit": 1000}) for _ in range(5)
                )
                raise psycopg.Rollback()

        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            claim_query = (
                "select * from dbops_jobs_claim_stale(600, 1000, 3, 'bench', 'bench:1:x', 300)"
            )
            claim_times = []
            for _ in range(7):
                with conn.transaction():
                    claim_times.append(execution_ms(conn, claim_query, {}))
                    raise psycopg.Rollback()
                # Each rolled-back claim leaves 3,000 dead rows behind: clear them so that
                # every run starts from the same state.
                conn.execute("vacuum jobs, dbops_job_recoveries, queue_history")
            claim_ms = statistics.median(claim_times)

            # 10,000 stale jobs for recover: turn completed jobs into stale in-progress ones.
            extra = RECOVER - STALE
            conn.execute(
                """update jobs set status = 'in_progress', completed_at = null,
                       updated_at = now() - interval '2 hours'
                   where id in (select id from jobs where status = 'completed' limit %(n)s)""",
                {"n": extra},
            )
            conn.execute("vacuum analyze jobs")

        with sqs_endpoint() as (endpoint, sqs_kind):
            queues = SqsQueues(region="us-east-1", endpoint=endpoint)
            queue_url = queues.create_queue(f"bench-{uuid.uuid4().hex[:8]}")
            sqs_calls: Counter[str] = Counter()

            def count_call(event_name: str, **_: Any) -> None:
                sqs_calls[event_name.rsplit(".", 1)[-1]] += 1

            queues.client.meta.events.register("before-call.sqs", count_call)
            counting = CountingStore(PostgresStore(dsn))
            t0 = time.perf_counter()
            result = jobs.recover(
                store=counting,
                queues=queues,
                queue_url=queue_url,
                operator="bench",
                older_than_seconds=600,
                limit=RECOVER,
                max_recoveries=3,
            )
            recover_seconds = time.perf_counter() - t0
            queues.client.meta.events.unregister("before-call.sqs", count_call)
            counting.close()
            queues.client.delete_queue(QueueUrl=queue_url)
        store.close()

    print("\n== figures")
    print(f"stale selection (ids, heartbeat check), 1000: {selection_ms:8.3f} ms database time")
    print(f"stale candidates counted on the index:      {counted_ms:8.3f} ms database time")
    print(f"stale query, limit 1000 (all {STALE} stale): {stale_1000:8.3f} ms database time")
    print(f"stale query, limit 100 (CLI default):      {stale_100:8.3f} ms database time")
    print(f"stale count (all {STALE}):                    {stale_count:8.3f} ms database time")
    print(f"stale query without the partial index:     {no_index:8.3f} ms database time")
    print(f"  -> partial index speed-up: x{no_index / stale_1000:,.0f}")
    print(f"claim {STALE} stale jobs (one statement):     {claim_ms:8.3f} ms database time")
    sends = sqs_calls["SendMessageBatch"]
    total_sqs = sum(sqs_calls.values())
    total_db = sum(counting.calls.values())
    batches = -(-result.requeued // jobs.SQS_BATCH)
    print(
        f"recover {RECOVER:,} stale jobs: claimed {result.claimed:,}, sent {result.sent:,}, "
        f"failed sends {result.failed_sends} in {recover_seconds:.1f} s"
    )
    print(f"  SQS endpoint: {sqs_kind}; SQS calls: {dict(sqs_calls)}")
    print(
        f"  -> SendMessageBatch per 10 jobs: {sends / result.claimed * 10:.3f}; all SQS calls "
        f"per 10 jobs: {total_sqs / result.claimed * 10:.4f}"
    )
    print(f"  database round trips: {dict(counting.calls)}")
    mark_ms = counting.seconds["dbops_jobs_outbox_mark"] * 1000
    claim_wall = counting.seconds["dbops_jobs_claim_stale"] * 1000
    db_ms = sum(counting.seconds.values()) * 1000
    print(
        f"  client-side time in database calls: {db_ms:,.0f} ms of {recover_seconds * 1000:,.0f} "
        f"ms (recording a batch {mark_ms / max(1, counting.calls['dbops_jobs_outbox_mark']):.2f} "
        f"ms each, a claim of {jobs.DEFAULT_CHUNK} "
        f"{claim_wall / max(1, counting.calls['dbops_jobs_claim_stale']):.1f} ms each)"
    )
    print(
        f"  -> {total_db} round trips for {batches} SQS batches: "
        f"{total_db / batches:.3f} per batch "
        f"({counting.calls['dbops_jobs_outbox_mark']} to record batches, "
        f"{counting.calls['dbops_jobs_claim_stale']} claims of up to {jobs.DEFAULT_CHUNK})"
    )
    print("\n== budgets (issue 3)")
    print(f"  stale selection < 1 ms:        {'ok' if selection_ms < 1 else 'MISSED'}")
    print(f"  stale query (1000 rows) < 1 ms: {'ok' if stale_1000 < 1 else 'MISSED'}")
    print(f"  no Seq Scan on jobs:           {'ok' if not seq_scan else 'MISSED'}")
    print(f"  claim 1,000 < 25 ms:           {'ok' if claim_ms < 25 else 'MISSED'}")
    print(f"  <= 1 SendMessageBatch/10 jobs: {'ok' if sends * 10 <= result.claimed else 'MISSED'}")
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
