"""Session-wide real services and per-test isolation.

- PostgreSQL: embedded via pgserver, or DBOPS_TEST_DATABASE_URL. A template database
  holds the app schema and every dbops migration; each test gets a fresh copy.
- SQS over real HTTP: moto's ThreadedMotoServer, or DBOPS_TEST_SQS_ENDPOINT
  (e.g. LocalStack). Each test gets uniquely named queues.
- Every test runs with a temporary config/data folder and fake AWS credentials.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql

from dbops.adapters.postgres import PostgresStore
from dbops.services import migrations
from tests.dbpool import DatabasePool
from tests.helpers import pgdata_parent

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp/dbops-runtime")
os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)

ENV_TO_CLEAR = [
    "DATABASE_URL",
    "DBOPS_DATABASE_URL",
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_SERVICE_KEY",
    "SQS_QUEUE_URL",
    "SQS_DLQ_URL",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL",
    "SLACK_WEBHOOK_URL",
    "STALE_THRESHOLD_MINUTES",
    "DLQ_ALERT_THRESHOLD",
    "DBOPS_PROFILE",
    "DBOPS_OPERATOR",
    "DBOPS_DEBUG",
    "DBOPS_TRANSPORT",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
]


# --------------------------------------------------------------------------- postgres
@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    external = os.environ.get("DBOPS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    # Not under pytest's tmp folder: a concurrent pytest session resets that to 0700,
    # locking out the `pgserver` user postgres runs as when we are root.
    server = pgserver.get_server(
        Path(tempfile.mkdtemp(prefix="dbops-test-pg-", dir=pgdata_parent())),
        cleanup_mode="delete",
    )
    server.psql("alter system set max_connections = 300;")
    # A throwaway test server: no flush to disk on commit or checkpoint.
    for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
        server.psql(f"alter system set {setting};")
    # max_connections only takes effect after a restart (concurrency tests open 150+).
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.ensure_postgres_running()
    yield server.get_uri()


def _with_db(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    name = f"dbops_tpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_server_url) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = _with_db(pg_server_url, name)
    store = PostgresStore(url)
    migrations.migrate(store=store, which="app")
    migrations.migrate(store=store, which="dbops")
    store.close()
    yield name
    with _admin(pg_server_url) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def db_pool(pg_server_url: str) -> Iterator[DatabasePool]:
    """This worker's reusable test databases (tests/dbpool.py)."""
    pool = DatabasePool(pg_server_url)
    yield pool
    pool.close()


@pytest.fixture
def database_url(pg_server_url: str, pg_template: str, db_pool: DatabasePool) -> Iterator[str]:
    """A fresh database with the app schema and all dbops migrations applied."""
    name = db_pool.acquire(pg_template)
    yield _with_db(pg_server_url, name)
    db_pool.release(name)


# --------------------------------------------------------------------------- schema variants
# The application schema in the shapes dbops must work on (issue 11): `standard` is the
# sandbox's default (`pg_template` above); `legacy` is production-shaped (customer_id uuid,
# no 'cancelled', uuid history ids with legacy status_from/status_to rows, RLS, FKs, ...).
SCHEMA_VARIANTS = {"standard": "app", "legacy": "app_legacy"}


@pytest.fixture(scope="session")
def pg_legacy_template(pg_server_url: str) -> Iterator[str]:
    """A template database: the `legacy` app schema plus every dbops migration.

    A failure (a dbops migration that does not support the variant) is raised once and
    pytest reports it for every test that needs this template.
    """
    name = f"dbops_tpl_legacy_{uuid.uuid4().hex[:8]}"
    with _admin(pg_server_url) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        url = _with_db(pg_server_url, name)
        store = PostgresStore(url)
        try:
            migrations.migrate(store=store, which="app_legacy")  # SCHEMA_VARIANTS["legacy"]
            migrations.migrate(store=store, which="dbops")
        finally:
            store.close()
        yield name
    finally:
        with _admin(pg_server_url) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture(params=list(SCHEMA_VARIANTS))
def schema_variant(request: pytest.FixtureRequest) -> str:
    """Each application schema variant in turn: "standard", then "legacy"."""
    return str(request.param)


@pytest.fixture
def variant_database_url(
    request: pytest.FixtureRequest, pg_server_url: str, schema_variant: str
) -> Iterator[str]:
    """A fresh database with `schema_variant`'s app schema and all dbops migrations."""
    fixture = "pg_template" if schema_variant == "standard" else "pg_legacy_template"
    template = request.getfixturevalue(fixture)
    pool: DatabasePool = request.getfixturevalue("db_pool")
    name = pool.acquire(template)
    yield _with_db(pg_server_url, name)
    pool.release(name)


@pytest.fixture
def variant_db(variant_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection (dict rows, autocommit) to the variant's test database."""
    from psycopg.rows import dict_row

    with psycopg.connect(variant_database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def variant_db_env(monkeypatch: pytest.MonkeyPatch, variant_database_url: str) -> str:
    """DATABASE_URL set to the variant's test database."""
    monkeypatch.setenv("DATABASE_URL", variant_database_url)
    return variant_database_url


@pytest.fixture
def variant_env(
    monkeypatch: pytest.MonkeyPatch,
    variant_database_url: str,
    queues: QueuePair,
    sqs_endpoint: str,
) -> QueuePair:
    """Like `env`, on the variant's database: DATABASE_URL, both queues, the endpoint."""
    monkeypatch.setenv("DATABASE_URL", variant_database_url)
    monkeypatch.setenv("SQS_QUEUE_URL", queues.main_url)
    monkeypatch.setenv("SQS_DLQ_URL", queues.dlq_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    return queues


@pytest.fixture
def empty_database_url(pg_server_url: str, db_pool: DatabasePool) -> Iterator[str]:
    """A fresh database with nothing installed."""
    name = db_pool.acquire(None)
    yield _with_db(pg_server_url, name)
    db_pool.release(name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to the test database, for arranging and asserting."""
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


# --------------------------------------------------------------------------- sqs
@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    external = os.environ.get("DBOPS_TEST_SQS_ENDPOINT")
    if external:
        yield external.rstrip("/")
        return
    from dbops.sandbox.sqs_server import ThreadedSqsServer

    # moto's server with dbops.sandbox.sqs_server's changes; no werkzeug log line per
    # request (they ended up in every test's captured log).
    server = ThreadedSqsServer("127.0.0.1", 0, log_requests=False)
    server.start()
    yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    server.stop()


@pytest.fixture(scope="session")
def sqs_client(sqs_endpoint: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=sqs_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class QueuePair:
    main_url: str
    dlq_url: str
    main_name: str
    dlq_name: str
    client: Any

    def visible(self, url: str) -> int:
        attrs = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    def drain(self, url: str, *, limit: int = 10000) -> list[dict[str, Any]]:
        """Receive (and delete) every message: for asserting what a queue holds."""
        seen: list[dict[str, Any]] = []
        empty = 0
        # An empty receive ends the drain once the queue's own count says nothing is visible
        # (no long poll: a one-second wait per drain added minutes to the suite).
        while len(seen) < limit and empty < 20:
            got = self.client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                VisibilityTimeout=60,
            ).get("Messages", [])
            if not got:
                if self.visible(url) == 0:
                    break
                empty += 1
                continue
            empty = 0
            seen.extend(got)
            self.client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
        return seen


def _queue_arn(sqs_client: Any, url: str) -> str:
    """The queue's ARN from its URL (`.../ACCOUNT/NAME`, as SQS, moto and LocalStack build
    both); asked of the server only for a URL of another shape. One call less per test."""
    *_, account, name = url.rstrip("/").split("/")
    if account.isdigit() and len(account) == 12 and name:
        return f"arn:aws:sqs:{sqs_client.meta.region_name}:{account}:{name}"
    attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


@pytest.fixture
def queues(sqs_client: Any) -> QueuePair:
    suffix = uuid.uuid4().hex[:10]
    dlq_name, main_name = f"t-{suffix}-dlq", f"t-{suffix}"
    dlq_url = sqs_client.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = _queue_arn(sqs_client, dlq_url)
    main_url = sqs_client.create_queue(
        QueueName=main_name,
        Attributes={
            "VisibilityTimeout": "300",
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}',
        },
    )["QueueUrl"]
    return QueuePair(main_url, dlq_url, main_name, dlq_name, sqs_client)


# --------------------------------------------------------------------------- environment
@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temp config and data folders, no real credentials, for every test."""
    for name in ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    monkeypatch.setenv("DBOPS_CONFIG_DIR", str(config))
    monkeypatch.setenv("DBOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("DBOPS_OPERATOR", "test-operator")
    # moto and LocalStack answer an empty short poll authoritatively, so no receive needs
    # to wait (a 1 s long poll at the end of every scan was about half the suite's wall
    # time). Tests about waiting set their own; services built in tests wait as in
    # production unless given `max_wait_seconds`.
    monkeypatch.setenv("DBOPS_SQS_LONG_POLL_SECONDS", "0")
    return config


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, queues: QueuePair, sqs_endpoint: str
) -> QueuePair:
    """A fully configured environment: database, main queue, DLQ, SQS endpoint."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SQS_QUEUE_URL", queues.main_url)
    monkeypatch.setenv("SQS_DLQ_URL", queues.dlq_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    return queues


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


# --------------------------------------------------------------------------- supabase (stub)
# The Supabase transport runs through supabase-py over real HTTP against a PostgREST-style
# stub (tests/postgrest_stub.py) that executes each RPC in the per-test database.
SUPABASE_TEST_KEY = "sb-test-service-role-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def postgrest_stub() -> Iterator[Any]:
    """The session's PostgREST stub server (a `tests.postgrest_stub.PostgrestStub`)."""
    from tests.postgrest_stub import PostgrestStub

    stub = PostgrestStub(SUPABASE_TEST_KEY).start()
    yield stub
    stub.stop()


@pytest.fixture(scope="session")
def postgrest_url(postgrest_stub: Any) -> str:
    """The stub server's root URL (use `supabase_url` for a project bound to a database)."""
    return str(postgrest_stub.url)


@pytest.fixture
def supabase_key() -> str:
    """The service-role key the stub accepts."""
    return SUPABASE_TEST_KEY


@pytest.fixture
def supabase_url(postgrest_stub: Any, database_url: str) -> Iterator[str]:
    """A SUPABASE_URL whose RPC calls run in this test's database (`database_url`)."""
    with postgrest_stub.project(database_url) as url:
        yield url


@pytest.fixture
def supabase_env(monkeypatch: pytest.MonkeyPatch, supabase_url: str) -> str:
    """SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY set (and no DATABASE_URL): the CLI uses
    the Supabase transport against this test's database."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DBOPS_DATABASE_URL", raising=False)
    monkeypatch.setenv("SUPABASE_URL", supabase_url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_TEST_KEY)
    return supabase_url


@pytest.fixture(params=["postgres", "supabase"])
def store(request: pytest.FixtureRequest, database_url: str) -> Iterator[Any]:
    """A Store on this test's database, once per transport (PostgresStore, SupabaseStore)."""
    built: Any
    if request.param == "postgres":
        built = PostgresStore(database_url)
    else:
        from dbops.adapters.supabase import SupabaseStore

        built = SupabaseStore(request.getfixturevalue("supabase_url"), SUPABASE_TEST_KEY)
    yield built
    built.close()


# --------------------------------------------------------------------------- jobs (issue 3)
class JobSeed:
    """Arranges application rows for `dbops jobs` tests: jobs, heartbeats, history, results.

    Ages are seconds before now(); every method returns the new row's id.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def job(
        self,
        *,
        status: str = "in_progress",
        idle: float = 3600,
        customer: str = "cust-1",
        priority: int = 3,
        package_size: int | None = 5,
        metadata: dict[str, Any] | None = None,
        created: float | None = None,
        started: float | None = None,
        completed: float | None = None,
        error: str | None = None,
    ) -> str:
        from psycopg.types.json import Jsonb

        created = max(created if created is not None else idle, idle)
        row = self.conn.execute(
            """insert into jobs (customer_id, package_size, priority_level, status, created_at,
                   updated_at, started_at, completed_at, error_message, metadata)
               values (%s, %s, %s, %s, now() - make_interval(secs => %s),
                   now() - make_interval(secs => %s),
                   now() - make_interval(secs => %s), now() - make_interval(secs => %s),
                   %s, %s)
               returning id""",
            [
                customer,
                package_size,
                priority,
                status,
                created,
                idle,
                started,
                completed,
                error,
                Jsonb(metadata or {}),
            ],
        ).fetchone()
        return str(row["id"] if isinstance(row, dict) else row[0])

    def many(
        self,
        count: int,
        *,
        status: str = "in_progress",
        idle: float = 3600,
        customer_prefix: str = "cust-",
    ) -> list[str]:
        rows = self.conn.execute(
            """insert into jobs (customer_id, package_size, status, created_at, updated_at,
                   started_at)
               select %s || g, g, %s, now() - make_interval(secs => %s + 60),
                      now() - make_interval(secs => %s), now() - make_interval(secs => %s + 30)
               from generate_series(1, %s) g
               returning id""",
            [customer_prefix, status, idle, idle, idle, count],
        ).fetchall()
        return [str(r["id"] if isinstance(r, dict) else r[0]) for r in rows]

    def heartbeat(self, job_id: str | None, *, age: float, status: str = "running") -> str:
        row = self.conn.execute(
            """insert into worker_heartbeats (worker_id, queue_name, status, current_job_id,
                   last_heartbeat)
               values (gen_random_uuid(), 'jobs', %s, %s, now() - make_interval(secs => %s))
               returning worker_id""",
            [status, job_id, age],
        ).fetchone()
        return str(row["worker_id"] if isinstance(row, dict) else row[0])

    def event(
        self, job_id: str, event: str, *, age: float = 0, details: dict[str, Any] | None = None
    ) -> None:
        from psycopg.types.json import Jsonb

        self.conn.execute(
            """insert into queue_history (job_id, event, details, created_at)
               values (%s, %s, %s, now() - make_interval(secs => %s))""",
            [job_id, event, Jsonb(details or {}), age],
        )

    def result(self, job_id: str, status: str, *, age: float = 0, directory: str = "dir") -> None:
        self.conn.execute(
            """insert into job_results (job_id, directory_name, status, created_at, updated_at)
               values (%s, %s, %s, now() - make_interval(secs => %s),
                       now() - make_interval(secs => %s))""",
            [job_id, directory, status, age, age],
        )


@pytest.fixture
def job_seed(db: Any) -> JobSeed:
    """A `JobSeed` on this test's database (see `db`)."""
    return JobSeed(db)


# The longest files, longest first (measured with --durations=0). xdist hands whole files
# to workers in collection order, so starting these first keeps one long file from running
# alone at the end while the other workers idle. Order only: nothing is asserted on it.
LONGEST_FILES = (
    "services/test_redrive.py",
    "reliability/test_secret_canary.py",
    "reliability/test_sqs_faults.py",
    "reliability/test_redrive_kill.py",
    "cli/test_sandbox_cmd.py",
    "cli/test_dlq_redrive_cmd.py",
    "services/test_migrations.py",
    "services/test_jobs.py",
    "cli/test_dlq_cmd.py",
    "reliability/test_bad_input.py",
    "reliability/test_jobs_concurrency.py",
    "services/test_ratelimit.py",
    "reliability/test_dlq_purge_kill.py",
    "test_schema_variants.py",
    "cli/test_demo_cmd.py",
    "cli/test_dlq_odd_messages.py",
    "reliability/test_dlq_replay_kill.py",
    "services/test_audit.py",
    "reliability/test_jobs_operators.py",
    "services/test_dlq_purge.py",
    "cli/test_dlq_stats_cmd.py",
    "test_startup.py",
)


def _file_rank(item: pytest.Item) -> int:
    relative = item.path.relative_to(Path(__file__).parent).as_posix()
    try:
        return LONGEST_FILES.index(relative)
    except ValueError:
        return len(LONGEST_FILES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that talks to SQS, so CI can re-run them against LocalStack; start
    the longest files first."""
    for item in items:
        if "sqs_endpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sqs)
    items.sort(key=_file_rank)  # stable: tests keep their order within a file


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: at least 5 workers. Much of a test's time is spent waiting (SQS and
    Postgres round trips, child processes, deliberate lease, rate and canary windows): on
    the 2-core machine 4 workers left a third of the CPU idle (~170-180 s), 5 finished in
    134-137 s, 6 in 140-162 s (each worker also collects the suite and starts its own
    Postgres and moto server)."""
    return max(5, os.cpu_count() or 1)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything imported so far (modules, botocore models, pydantic schemas) out of
    the garbage collector's view: it is never freed, and each full collection would walk it
    again.

    Then collect less often: with the imports frozen, the collector's "long-lived objects
    grew by 25%" rule let a full collection run every few thousand allocations (1.5 of 2.3 s
    of collector time in a CLI-heavy run); these thresholds cut it to about 1.1 s."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 50, 1000)
