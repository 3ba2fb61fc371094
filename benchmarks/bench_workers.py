"""Benchmark: `dbops workers` over 1,000 heartbeats (a fleet far larger than most).

Run: `uv run python -m benchmarks.bench_workers` (an embedded pgserver in a temp folder), or
point DBOPS_BENCH_DATABASE_URL at a server you own (a scratch database is created and
dropped there). Not part of the test suite; prints the figures of one run (BENCH_WORKERS
resizes it; BENCH_JOBS is the size of the jobs table they hold jobs from).

Measured:
1. `workers.list_workers` (one `dbops_workers_list` round trip, every row validated into
   its pydantic model): client time, median and worst of RUNS; also `--dead` (the dead
   ones only) and `workers show` of a dead worker holding a job;
2. the whole command, `dbops workers -o json`, as a subprocess: wall time, median of
   CLI_RUNS, after bytecode was compiled (compileall on dbops and a warm-up run with
   PYTHONDONTWRITEBYTECODE removed, so an environment that sets it does not time module
   compilation instead of dbops).
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import dbops
from benchmarks._database import scratch_database, server_url
from dbops.adapters.postgres import PostgresStore
from dbops.services import migrations, workers

WORKERS = int(os.environ.get("BENCH_WORKERS", "1000"))
JOBS = int(os.environ.get("BENCH_JOBS", "100000"))
RUNS = 25
CLI_RUNS = 9

SEED = """
insert into jobs (customer_id, status, created_at, updated_at, started_at)
select 'cust_' || (i %% 500),
       case when i %% 10 = 0 then 'in_progress' else 'completed' end,
       now() - make_interval(secs => i), now() - make_interval(secs => i / 2),
       now() - make_interval(secs => i / 2 + 30)
from generate_series(1, %(jobs)s) i;

-- 1 in 5 workers dead (no beat for 10 min to 2 h), 3 in 4 hold an in-progress job.
insert into worker_heartbeats (worker_id, queue_name, status, current_job_id, last_heartbeat)
select gen_random_uuid(),
       case when w.n %% 4 = 0 then 'jobs-priority' else 'jobs' end,
       case when w.n %% 4 = 3 then 'idle' else 'running' end,
       case when w.n %% 4 = 3 then null else w.id end,
       case when w.n %% 5 = 0 then now() - make_interval(secs => 600 + w.n * 7)
            else now() - make_interval(secs => w.n %% 20) end
from (select id, row_number() over (order by id) as n from jobs
      where status = 'in_progress' limit %(workers)s) w;

insert into queue_history (job_id, event, details, worker_id, created_at)
select h.current_job_id, 'started', '{}'::jsonb, h.worker_id, h.last_heartbeat
from worker_heartbeats h where h.current_job_id is not null;
analyze;
"""


def _timed(call: Callable[[], Any], runs: int = RUNS) -> tuple[float, float, Any]:
    call()  # warm
    times, result = [], None
    for _ in range(runs):
        began = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times), result


def _precompile() -> dict[str, str]:
    """Compile dbops' bytecode, then warm every module the command imports with bytecode
    writing on; returns the environment the timed runs use."""
    compileall.compile_dir(str(Path(dbops.__file__).parent), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env


def _cli_ms(database_url: str) -> tuple[float, int]:
    env = _precompile()
    env["DATABASE_URL"] = database_url
    for name in ("SQS_QUEUE_URL", "SQS_DLQ_URL", "DBOPS_PROFILE", "SUPABASE_URL"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "dbops", "workers", "-o", "json"]
    first = subprocess.run(argv, capture_output=True, check=True, env=env)  # writes the .pyc
    rows = len(json.loads(first.stdout))
    times = []
    for _ in range(CLI_RUNS):
        began = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), rows


def main() -> dict[str, float]:
    figures: dict[str, float] = {}
    with server_url() as url, scratch_database(url) as database_url:
        store = PostgresStore(database_url)
        try:
            migrations.migrate(store=store, which="app")
            migrations.migrate(store=store, which="dbops")
            with psycopg.connect(database_url, autocommit=True) as conn:
                for statement in SEED.split(";"):
                    if statement.strip():
                        conn.execute(statement, {"jobs": JOBS, "workers": WORKERS})
            median, worst, rows = _timed(lambda: workers.list_workers(store=store))
            dead = sum(1 for r in rows if not r.alive)
            print(
                f"workers list, {len(rows)} workers ({dead} dead) among {JOBS:,} jobs: "
                f"{median:.1f} ms median, {worst:.1f} ms worst (one round trip)"
            )
            figures["list_ms"] = median
            median, _, only_dead = _timed(lambda: workers.list_workers(store=store, dead_only=True))
            print(f"workers list --dead ({len(only_dead)}): {median:.1f} ms median")
            figures["dead_ms"] = median
            holder = next(r for r in only_dead if r.current_job_id)
            median, _, detail = _timed(
                lambda: workers.show(store=store, worker_id=str(holder.worker_id))
            )
            print(f"workers show (holds {len(detail.jobs)} job(s)): {median:.1f} ms median")
            figures["show_ms"] = median
            cli, shown = _cli_ms(database_url)
            print(f"dbops workers -o json ({shown} rows), whole process: {cli:.0f} ms median")
            figures["cli_ms"] = cli
        finally:
            store.close()
    return figures


if __name__ == "__main__":
    main()
