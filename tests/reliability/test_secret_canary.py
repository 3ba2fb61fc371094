"""Secret canary (architecture.md section 5.5): distinctive values in every secret setting must
never come back out, whatever the command, its outcome, or `--debug`.

Every secret setting gets a canary: the database password (used for real: pgserver
accepts any password, so the DSN with it connects), the Supabase service-role key (the
PostgREST stub is switched to it, so the Supabase transport authenticates with it), the
Slack webhook URL, the AWS secret key (it signs every SQS request), and an API key inside
rate-limit identifiers. Then every command runs on a success path and on failure paths
(database and SQS unreachable, malformed DSNs, a rejected Supabase key, failing
webhooks), with and without `--debug`. No canary may appear in stdout, stderr, the rows
dbops writes (action log, audit runs, monitor state, free-text reasons) or any file under
DBOPS_DATA_DIR / DBOPS_CONFIG_DIR.

No request leaves the machine: HTTP(S)_PROXY points at a closed local port (with
127.0.0.1 exempt), so the Slack URL is never contacted for real.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import psycopg
import pytest
import typer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbops.cli.main import app
from tests.faultproxy import FaultProxy
from tests.helpers import free_port, invoke

DB_PASSWORD = "CANARYpw_7f3a9"
SERVICE_ROLE_KEY = "CANARYsrk_51bd0e77aa"
WEBHOOK_URL = "https://hooks.slack.com/services/T000/B000/CANARYhook99"
AWS_SECRET = "CANARYaws_2c9e"
API_KEY = "CANARYkey_0d15ea5e"
IDENTIFIER = f"api_key:{API_KEY}"
# A runbook whose placeholder takes the identifier (it is shown in each step's command).
RUNBOOK = ["runbook", "run", "rate-limit-abuse", "--set", f"IDENTIFIER={IDENTIFIER}"]

# The full values, plus the distinctive part of each (catches partial leaks: a webhook
# token without its host, a password without its DSN). "CANARY" alone catches the rest.
CANARIES = [
    DB_PASSWORD,
    SERVICE_ROLE_KEY,
    WEBHOOK_URL,
    "CANARYhook99",
    AWS_SECRET,
    API_KEY,
    "CANARY",
]

# Commands not run here, and why.
EXEMPT = {
    "demo": "starts the embedded sandbox with its own throwaway credentials (tests/sandbox)",
    "sandbox up": "starts the embedded sandbox with its own throwaway credentials",
}


# --------------------------------------------------------------------------- recording
@dataclass
class Seen:
    """Everything dbops printed in this test, labelled by invocation."""

    outputs: list[tuple[str, str]] = field(default_factory=list)
    commands: set[str] = field(default_factory=set)
    dry: bool = False  # only note which commands would run

    def run(
        self,
        args: list[str],
        codes: set[int] | int = 0,
        *,
        input: str | None = None,
        debug: bool = False,
        label: str = "",
    ) -> Any:
        if self.dry:
            self.commands.add(command_path(args))
            return None
        argv = [*args, "--debug"] if debug else list(args)
        result = invoke(argv, code=None, input=input)
        allowed = {codes} if isinstance(codes, int) else codes
        shown = f"{label}dbops {' '.join(argv)}"
        assert result.code in allowed, (
            f"{shown}: exit {result.code}, expected {sorted(allowed)}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
        if not debug:
            assert "Traceback" not in result.stderr, f"{shown}:\n{result.stderr}"
        self.outputs.append((f"{shown} (stdout)", result.stdout))
        self.outputs.append((f"{shown} (stderr)", result.stderr))
        self.commands.add(command_path(args))
        return result


def command_path(args: list[str]) -> str:
    """The command an argv runs: `jobs show <id>` -> `jobs show`."""
    words: list[str] = []
    command: click.Command = typer.main.get_command(app)
    for arg in args:
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(click.Context(command), arg)
        if sub is None:
            break
        words.append(arg)
        command = sub
    return " ".join(words)


def leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


def assert_no_leaks(seen: Seen, *, database_url: str | None, folders: list[Path]) -> None:
    found: list[str] = []
    for label, text in seen.outputs:
        for canary in leaks(text):
            at = text.index(canary)
            found.append(f"{label}: {canary!r} in ...{text[max(0, at - 150) : at + 60]!r}")
    if database_url is not None:
        for table, text in database_rows(database_url):
            for canary in leaks(text):
                found.append(f"table {table}: {canary!r} in {text[:400]!r}")
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            text = path.read_bytes().decode("utf-8", "replace")
            for canary in leaks(text):
                found.append(f"file {path}: {canary!r}")
    assert not found, "secret canaries leaked:\n" + "\n".join(found[:40])


# Rows dbops writes for people to read. (rate-limit blocks keep the real identifier in
# `identifier`: the API must match it. Their free-text `reason` must not hold a key.)
_DB_QUERIES = {
    "dbops_action_log": "select row_to_json(t)::text as text from dbops_action_log t",
    "dbops_audit_runs": "select row_to_json(t)::text as text from dbops_audit_runs t",
    "dbops_dlq_monitor_state": (
        "select row_to_json(t)::text as text from dbops_dlq_monitor_state t"
    ),
    "dbops_rate_limit_blocks.reason": "select reason as text from dbops_rate_limit_blocks",
    "dbops_rate_limit_overrides.reason": (
        "select coalesce(reason, '') as text from dbops_rate_limit_overrides"
    ),
    "jobs.error_message": "select coalesce(error_message, '') as text from jobs",
    "queue_history.details": "select details::text as text from queue_history",
}


def database_rows(database_url: str) -> Iterator[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        for table, query in _DB_QUERIES.items():
            for (text,) in conn.execute(query).fetchall():
                yield table, text or ""


# --------------------------------------------------------------------------- environment
def url_with_password(
    database_url: str, password: str = DB_PASSWORD, *, user: str | None = None
) -> str:
    """The test database as a postgresql:// URL carrying `password` (pgserver trusts all
    connections, so the password is sent and accepted), as its user or `user`."""
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    host = str(info.get("host") or "127.0.0.1")
    where = f"@/{info['dbname']}?host={quote(host, safe='')}"
    if not host.startswith("/"):
        where = f"@{host}:{info.get('port') or 5432}/{info['dbname']}"
    return f"postgresql://{user or info.get('user') or 'postgres'}:{password}{where}"


@pytest.fixture
def canary_env(
    env: Any, database_url: str, monkeypatch: pytest.MonkeyPatch, supabase_url: str
) -> Any:
    """`env` (database, queues, SQS endpoint) with a canary in every secret setting."""
    monkeypatch.setenv("DATABASE_URL", url_with_password(database_url))
    # Both transports configured: DATABASE_URL wins, the key is still a loaded secret.
    monkeypatch.setenv("SUPABASE_URL", supabase_url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK_URL)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    # Nothing may leave the machine (the Slack URL above is real-looking).
    closed = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return env


def folders(tmp_path: Path) -> list[Path]:
    return [tmp_path / "data", tmp_path / "config"]


def seed(env: Any, job_seed: Any, db: Any) -> dict[str, str]:
    """Jobs, DLQ messages and rate-limit traffic (some from the canary API key)."""
    stale = job_seed.many(3, idle=3600)
    pending = job_seed.job(status="pending", idle=7200)
    spare = job_seed.job(status="pending", idle=7200)
    bodies = [
        {"job_id": stale[0], "customer_id": "acme", "_dlq_reason": "timeout"},
        {"job_id": str(uuid.uuid4()), "customer_id": "to-delete", "_dlq_reason": "bad"},
        {"job_id": str(uuid.uuid4()), "customer_id": "beta", "_dlq_reason": "oom"},
    ]
    ids = [
        env.client.send_message(QueueUrl=env.dlq_url, MessageBody=json.dumps(b))["MessageId"]
        for b in bodies
    ]
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select case when g %% 2 = 0 then %s else 'ip:203.0.113.7' end, '/api/jobs', "
        "       now() - make_interval(secs => g) "
        "from generate_series(1, 40) g",
        [IDENTIFIER],
    )
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select %s, '/api/jobs', now() - interval '3 days' from generate_series(1, 20)",
        [IDENTIFIER],
    )
    dead_worker = job_seed.heartbeat(stale[0], age=900)
    job_seed.heartbeat(None, age=5, status="idle")
    return {
        "stale": stale[0],
        "pending": pending,
        "spare": spare,
        "message": ids[2],
        "worker": dead_worker,
    }


# --------------------------------------------------------------------------- webhook
class Webhook:
    """A local Slack-like webhook: answers `status` with a body echoing the request path
    (as some gateways do), so a leaked token in an error detail is caught."""

    def __init__(self) -> None:
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b"ok" if hook.status < 300 else f"no_service: {self.path}".encode()
                self.send_response(hook.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = (
            f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/CANARYhook99"
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


# --------------------------------------------------------------------------- invocations
def success_paths(seen: Seen, ids: dict[str, str], data: Path, *, debug: bool) -> None:
    """A representative successful invocation of every command (in an order that keeps
    each one meaningful: recover before the DLQ is purged, block before unblock, ...)."""

    def run(args: list[str], codes: set[int] | int = 0, **kw: Any) -> Any:
        return seen.run(args, codes, debug=debug, **kw)

    run(["config", "show", "-o", "json"])
    run(["config", "show"])
    run(["config", "path"])
    run(["doctor", "-o", "json"], {0, 5})  # 5: a check failed (see the supabase test)
    run(["db", "status", "-o", "json"])
    run(["db", "check", "-o", "json"])
    run(["db", "check"])
    run(["db", "migrate", "--dry-run"])
    run(["db", "migrate", "--yes", "-o", "json"])
    run(["db", "check", "-o", "json"])
    run(["db", "roles", "-o", "json"])
    run(["db", "roles", "--apply", "--yes", "-o", "json"])
    run(["db", "inspect", "all", "-o", "json"])
    run(["db", "inspect", "long-running", "--min-duration", "0s"])
    # jobs
    run(["jobs", "list", "-o", "json"])
    run(["jobs", "show", ids["stale"], "-o", "json"])
    run(["jobs", "stats", "-o", "json"])
    run(["jobs", "stale", "-o", "json"])
    run(["jobs", "orphans", "-o", "json"])
    run(["jobs", "recover", "--yes", "-o", "json"])
    run(["jobs", "requeue", ids["pending"], "--yes", "-o", "json"])
    # Refused without --yes (the refusal is logged too), then done.
    run(["jobs", "fail", ids["spare"], "--reason", f"client sent {IDENTIFIER}"], 6)
    run(["jobs", "fail", ids["spare"], "--reason", f"client sent {IDENTIFIER}", "--yes"])
    # workers
    run(["workers", "-o", "json"])
    run(["workers", "list", "--dead", "-o", "json"])
    run(["workers", "show", ids["worker"], "-o", "json"])
    run(["workers", "forget", ids["worker"], "--dry-run", "-o", "json"])
    run(["workers", "forget", ids["worker"], "--yes", "-o", "json"])
    run(["jobs", "retry", "--error-like", IDENTIFIER, "--dry-run", "-o", "json"])
    run(["jobs", "retry", "--status", "failed", "--yes", "-o", "json"])
    run(["jobs", "fail", "--customer", IDENTIFIER, "--reason", f"by {IDENTIFIER}", "--yes"])
    # queues
    run(["queue", "list", "-o", "json"])
    run(["queue", "info", "-o", "json"])
    run(["queue", "depth", "-o", "json"])
    run(["queue", "watch", "--count", "1", "-o", "jsonl"])
    # dlq
    run(["dlq", "list", "-o", "json"])
    run(["dlq", "show", ids["message"], "-o", "json"])
    run(["dlq", "stats", "--by", "job_status", "-o", "json"])
    run(["dlq", "stats", "--by", "customer"])
    run(["dlq", "export", "--out", str(data / "export.jsonl"), "--reveal"])
    run(["dlq", "monitor", "-o", "json"], {0, 1})
    run(["dlq", "delete", "--customer", "to-delete", "--yes", "-o", "json"])
    run(["dlq", "redrive", "--customer", "acme", "--yes", "-o", "json"])
    # Move tasks: LocalStack implements them; moto does not (exit 5, a clean error).
    run(["dlq", "redrive-status", "-o", "json"], {0, 5})
    run(["dlq", "redrive-cancel", "--yes"], {0, 4, 5})
    run(["dlq", "purge", "--yes", "-o", "json"])
    run(["dlq", "replay", str(data / "export.jsonl"), "--yes", "-o", "json"])
    # rate limits
    run(["ratelimit", "list", "-o", "json"])
    run(
        [
            *("ratelimit", "set", "public", "--limit", "200", "--window", "1m", "--for", "1h"),
            *("--reason", f"launch for {IDENTIFIER}", "--yes", "-o", "json"),
        ]
    )
    run(["ratelimit", "disable", "staff", "--yes"])
    run(["ratelimit", "enable", "staff", "--yes"])
    run(["ratelimit", "top", "--since", "1h", "-o", "json"])
    run(["ratelimit", "top", "--since", "1h"])
    run(["ratelimit", "status", IDENTIFIER])
    run(["ratelimit", "status", "-", "-o", "json"], input=IDENTIFIER + "\n")
    block = ["ratelimit", "block", IDENTIFIER, "--for", "1h", "--reason", f"abuse {IDENTIFIER}"]
    run(block, 6)
    run([*block, "--yes"])
    run(["ratelimit", "unblock", IDENTIFIER, "--yes", "-o", "json"])
    run(["ratelimit", "reset", IDENTIFIER], 6)
    run(["ratelimit", "reset", IDENTIFIER, "--yes"])
    run(["ratelimit", "cleanup", "--older-than", "1d", "--yes", "-o", "json"])
    # audit, log
    run(["audit", "-o", "json"], {0, 1, 2})
    run(["audit"], {0, 1, 2})
    run(["audit", "history", "-o", "json"])
    run(["audit", "show", "latest", "-o", "json"])
    run(["audit", "show", "latest", "-o", "md"])
    run(["audit", "diff", "latest", "latest"])
    run(["top", "--once", "-o", "json"])
    run(["top", "--once"])
    run(["metrics"])
    run(["log", "-o", "json"])
    run(["log"])
    # runbooks: placeholders are filled in the commands shown
    run(["runbook", "list", "-o", "json"])
    run(["runbook", "show", "rate-limit-abuse"])
    run([*RUNBOOK, "--from", "6", "--dry-run", "-o", "json"])
    # sandbox (not running here): status and down succeed, env and seed say so
    run(["sandbox", "status", "-o", "json"])
    run(["sandbox", "down"])
    run(["sandbox", "env"], 3)
    run(["sandbox", "seed"], 3)


def every_command(seen: Seen, ids: dict[str, str], data: Path, *, debug: bool) -> None:
    """Every command once, for failure paths (codes are checked by the caller's set)."""
    failing = {1, 2, 3, 4, 5, 6}

    def run(args: list[str], **kw: Any) -> Any:
        result = seen.run(args, failing | {0}, debug=debug, **kw)
        if result is None:  # a dry run (coverage check)
            return None
        assert result.code != 1, f"dbops {' '.join(args)}: unexpected error\n{result.stderr}"
        return result

    job = ids.get("stale", str(uuid.uuid4()))
    for args in [
        ["config", "show", "-o", "json"],
        ["doctor", "-o", "json"],
        ["db", "status"],
        ["db", "check"],
        ["db", "migrate", "--yes"],
        ["db", "check"],
        ["db", "roles", "--apply", "--yes"],
        ["db", "inspect"],
        ["jobs", "list"],
        ["jobs", "show", job],
        ["jobs", "stats"],
        ["jobs", "stale"],
        ["jobs", "orphans"],
        ["jobs", "recover", "--yes"],
        ["jobs", "requeue", job, "--yes"],
        ["jobs", "fail", job, "--reason", f"by {IDENTIFIER}", "--yes"],
        ["workers"],
        ["workers", "list"],
        ["workers", "show", ids.get("worker", job)],
        ["workers", "forget", ids.get("worker", job), "--yes"],
        ["jobs", "retry", "--customer", IDENTIFIER, "--yes"],
        ["queue", "list"],
        ["queue", "info"],
        ["queue", "depth"],
        ["queue", "watch", "--count", "1", "-o", "jsonl"],
        ["dlq", "list"],
        ["dlq", "show", "some-id"],
        ["dlq", "stats", "--by", "job_status"],
        ["dlq", "export", "--out", str(data / f"failed-export-{debug}.jsonl")],
        ["dlq", "monitor"],
        ["dlq", "delete", "--customer", "acme", "--yes"],
        ["dlq", "redrive", "--yes"],
        ["dlq", "redrive-status"],
        ["dlq", "redrive-cancel", "--yes"],
        ["dlq", "purge", "--yes"],
        ["dlq", "replay", str(data / "replay.jsonl"), "--yes"],
        ["ratelimit", "list"],
        ["ratelimit", "set", "public", "--limit", "200", "--reason", IDENTIFIER, "--yes"],
        ["ratelimit", "enable", "staff", "--yes"],
        ["ratelimit", "disable", "staff", "--yes"],
        ["ratelimit", "top"],
        ["ratelimit", "status", IDENTIFIER],
        ["ratelimit", "reset", IDENTIFIER, "--yes"],
        ["ratelimit", "block", IDENTIFIER, "--for", "1h", "--reason", IDENTIFIER, "--yes"],
        ["ratelimit", "unblock", IDENTIFIER, "--yes"],
        ["ratelimit", "cleanup", "--yes"],
        ["audit"],
        ["audit", "history"],
        ["audit", "show", "latest"],
        ["audit", "diff", "latest", "latest"],
        ["top", "--once"],
        ["metrics"],
        ["log"],
        [*RUNBOOK, "--from", "6", "--yes"],
    ]:
        run(args)


# --------------------------------------------------------------------------- tests
def test_every_command_is_exercised_or_exempt() -> None:
    from tests.reliability.test_bad_input import cli_commands

    ids = {"stale": "s", "pending": "p", "spare": "x", "message": "m", "worker": "w"}
    on_success, on_failure = Seen(dry=True), Seen(dry=True)
    success_paths(on_success, ids, Path("."), debug=False)
    every_command(on_failure, ids, Path("."), debug=False)
    everything = cli_commands()
    missing = sorted(everything - on_success.commands - set(EXEMPT))
    assert not missing, f"commands without a success path in the canary test: {missing}"
    # Failure paths: every command that talks to a database or SQS.
    local_only = {"config path", "runbook list", "runbook show"} | {
        c for c in everything if c.startswith("sandbox ")
    }
    missing = sorted(everything - on_failure.commands - local_only - set(EXEMPT))
    assert not missing, f"commands without a failure path in the canary test: {missing}"


def test_success_paths_with_debug_leak_no_secret(
    canary_env: Any, job_seed: Any, db: Any, database_url: str, tmp_path: Path
) -> None:
    ids = seed(canary_env, job_seed, db)
    seen = Seen()
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)

    success_paths(seen, ids, data, debug=True)

    # The password really was used: the action log was written through that DSN.
    logged = {(r["command"], r["outcome"]) for r in db.execute("select * from dbops_action_log")}
    assert {("jobs recover", "ok"), ("dlq purge", "ok"), ("ratelimit block", "ok")} <= logged
    assert ("ratelimit block", "refused") in logged
    assert_no_leaks(seen, database_url=database_url, folders=folders(tmp_path))


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_failure_paths_leak_no_secret(
    canary_env: Any,
    monkeypatch: pytest.MonkeyPatch,
    sqs_endpoint: str,
    tmp_path: Path,
    debug: bool,
) -> None:
    """The database unreachable (its DSN still carries the password) and SQS refusing the
    AWS key (403 InvalidClientTokenId from the fault proxy): every command fails cleanly,
    and the local action-log fallback file holds no secret either. Then SQS unreachable."""
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://dbops:{DB_PASSWORD}@127.0.0.1:{free_port()}/app"
    )
    proxy = FaultProxy(sqs_endpoint).start()
    try:
        proxy.fail(every=1, kinds=["denied"])
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
        seen = Seen()
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        (data / "replay.jsonl").write_text(
            json.dumps({"message_id": "m-1", "queue": "some-dlq", "body": "x"}) + "\n"
        )
        every_command(seen, {}, data, debug=debug)
        assert proxy.faults["denied"] > 0
    finally:
        proxy.stop()
    # SQS fine, the database still unreachable: SQS-only commands work, and their action
    # log row goes to the local fallback file.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    seen.run(["dlq", "purge", "--dry-run"], debug=debug, label="[no database] ")
    seen.run(["dlq", "redrive", "--yes", "-o", "json"], debug=debug, label="[no database] ")
    assert (data / "action-log.jsonl").exists()  # the fallback was written (and is checked)
    # Nothing listening at all (botocore retries the connection, then gives up).
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    for args in (["queue", "list"], ["dlq", "list"]):
        seen.run(args, 5, debug=debug, label="[unreachable] ")

    assert_no_leaks(seen, database_url=None, folders=folders(tmp_path))


@pytest.mark.parametrize(
    "dsn",
    [
        pytest.param(f"postgresql://dbops:{DB_PASSWORD}@db.example:notaport/app", id="bad-port"),
        pytest.param(f"postgresql://dbops:{DB_PASSWORD}@[::1/app", id="bad-ipv6"),
        pytest.param(f"postgresql://dbops:{DB_PASSWORD}@/app?sslmode=bogus", id="bad-option"),
        pytest.param(f"postgresql://dbops:{DB_PASSWORD}@/app?nosuch=1", id="unknown-option"),
        pytest.param(f"host=127.0.0.1 port=1 password={DB_PASSWORD} dbname=app", id="kv"),
        pytest.param(f"host=127.0.0.1 password='{DB_PASSWORD} x", id="kv-unterminated"),
        pytest.param(f"dbops:{DB_PASSWORD}@localhost/app", id="no-scheme"),
        pytest.param(f"postgres://dbops:{DB_PASSWORD}@127.0.0.1:1/app", id="postgres-scheme"),
    ],
)
def test_malformed_database_urls_leak_no_password(
    canary_env: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dsn: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", dsn)
    seen = Seen()
    for debug in (False, True):
        for args in (["log"], ["jobs", "stale", "-o", "json"], ["config", "show"], ["doctor"]):
            result = seen.run(args, {0, 3, 5}, debug=debug)
            if args[0] in ("log", "jobs"):
                assert result.code in (3, 5)
    assert_no_leaks(seen, database_url=None, folders=folders(tmp_path))


def test_supabase_transport_leaks_no_key(
    canary_env: Any,
    supabase_env: str,
    postgrest_stub: Any,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    job_seed: Any,
    db: Any,
    tmp_path: Path,
) -> None:
    """The stub accepts only the canary key: success paths authenticate with it; then a
    wrong key and an unreachable project fail, with and without --debug."""
    monkeypatch.setattr(postgrest_stub, "service_key", SERVICE_ROLE_KEY)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY)
    ids = seed(canary_env, job_seed, db)
    seen = Seen()
    for debug in (False, True):
        for args in (
            ["config", "show"],
            ["doctor", "-o", "json"],
            ["log", "-o", "json"],
            ["jobs", "stale", "-o", "json"],
            ["jobs", "show", ids["stale"], "-o", "json"],
            ["workers", "-o", "json"],
            ["ratelimit", "status", IDENTIFIER, "-o", "json"],
            ["ratelimit", "top", "--since", "1h"],
            ["audit", "--no-save", "-o", "json"],
        ):
            # audit exits with its verdict; doctor exits 5 when a check fails (a migration
            # file edited since the session's template database was built, say)
            codes = {"audit": {0, 1, 2}, "doctor": {0, 5}}.get(args[0], {0})
            seen.run(args, codes, debug=debug)
    seen.run(["ratelimit", "block", IDENTIFIER, "--for", "1h", "--reason", IDENTIFIER, "--yes"])
    seen.run(["ratelimit", "unblock", IDENTIFIER, "--yes"])
    assert {r["command"] for r in db.execute("select command from dbops_action_log")} >= {
        "ratelimit block",
        "ratelimit unblock",
    }

    # A key the project refuses (the stub now wants another one), then no project at all.
    monkeypatch.setattr(postgrest_stub, "service_key", "some-other-key-" + uuid.uuid4().hex)
    for debug in (False, True):
        for args in (["log"], ["jobs", "list"], ["ratelimit", "status", IDENTIFIER], ["doctor"]):
            result = seen.run(args, {3, 5}, debug=debug, label="[refused key] ")
            assert result.code == 3 or args == ["doctor"]
    monkeypatch.setenv("SUPABASE_URL", f"http://127.0.0.1:{free_port()}/nothing-here")
    for debug in (False, True):
        for args in (["log"], ["ratelimit", "reset", IDENTIFIER, "--yes"], ["db", "status"]):
            seen.run(args, {3, 5}, debug=debug, label="[unreachable] ")

    assert_no_leaks(seen, database_url=database_url, folders=folders(tmp_path))


def test_slack_webhook_url_never_shown(
    canary_env: Any, monkeypatch: pytest.MonkeyPatch, webhook: Webhook, tmp_path: Path
) -> None:
    canary_env.client.send_message(QueueUrl=canary_env.dlq_url, MessageBody="{}")
    seen = Seen()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", webhook.url)
    seen.run(["dlq", "monitor", "--notify", "slack", "-o", "json"], 1)  # delivered
    for status in (404,):
        webhook.status = status
        canary_env.client.send_message(QueueUrl=canary_env.dlq_url, MessageBody="{}")
        for debug in (False, True):
            seen.run(["dlq", "monitor", "--notify", "slack"], 5, debug=debug, label=f"[{status}] ")
    # The real-looking URL: the (closed) proxy refuses, nothing leaves the machine.
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK_URL)
    canary_env.client.send_message(QueueUrl=canary_env.dlq_url, MessageBody="{}")
    for debug in (False, True):
        seen.run(["dlq", "monitor", "--notify", "slack"], 5, debug=debug)
    seen.run(["config", "show", "-o", "json"])
    assert_no_leaks(seen, database_url=None, folders=folders(tmp_path))


def test_secrets_from_an_env_file_stdin_or_a_profile_leak_nowhere(
    env: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other places secrets may come from (never flags): --env-file, stdin, a profile."""
    from dbops.settings import write_profile

    secrets_text = "\n".join(
        [
            f"DATABASE_URL={url_with_password(database_url)}",
            f"SUPABASE_SERVICE_ROLE_KEY={SERVICE_ROLE_KEY}",
            f"SLACK_WEBHOOK_URL={WEBHOOK_URL}",
        ]
    )
    env_file = tmp_path / "secrets.env"  # outside the data and config folders
    env_file.write_text(secrets_text + "\n")
    monkeypatch.delenv("DATABASE_URL")
    seen = Seen()
    for debug in (False, True):
        for source in (["--env-file", str(env_file)], ["--env-file", "-"]):
            stdin = secrets_text if source[1] == "-" else None
            seen.run(["config", "show", *source], debug=debug, input=stdin)
            seen.run(["log", "-o", "json", *source], debug=debug, input=stdin)
            seen.run(["ratelimit", "status", IDENTIFIER, *source], debug=debug, input=stdin)
    profile = write_profile(
        "canary",
        {
            "database_url": url_with_password(database_url),
            "supabase_service_role_key": SERVICE_ROLE_KEY,
            "slack_webhook_url": WEBHOOK_URL,
        },
    )
    for debug in (False, True):
        seen.run(["config", "show", "-o", "json", "--profile", "canary"], debug=debug)
        seen.run(["doctor", "--profile", "canary"], {0, 5}, debug=debug)
        # The profile's database, unreachable: the error names neither URL nor password.
        write_profile(
            "broken", {"database_url": f"postgresql://u:{DB_PASSWORD}@127.0.0.1:{free_port()}/x"}
        )
        seen.run(["jobs", "list", "--profile", "broken"], 5, debug=debug)
    profile.unlink()  # it holds the secrets on purpose (written by this test, not dbops)
    assert_no_leaks(seen, database_url=database_url, folders=folders(tmp_path))


# --------------------------------------------------------------------------- hypothesis
# Passwords full of the characters that break URL parsing (`@ : / % # ? &` and spaces),
# at least 8 long, built so that every 4-character window holds two letters from an
# alphabet that ordinary output never strings together: any window found in the output
# is a leak, never a coincidence.
PW_LETTERS = "QXZJKVW"
PW_SPECIALS = "@:/%#?& "
_PW_CHUNK = st.tuples(
    st.sampled_from(PW_LETTERS), st.sampled_from(PW_LETTERS), st.sampled_from(PW_SPECIALS)
).map("".join)
PASSWORDS = st.lists(_PW_CHUNK, min_size=3, max_size=6).map("".join)


def password_parts(password: str) -> set[str]:
    """Every part of the password longer than 3 characters (its 4-character windows)."""
    return {password[i : i + 4] for i in range(len(password) - 3)}


def kv_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(password="QX@ZJ:KV/WQ%XZ#JK?VW&QZ XJ", debug=False)
@example(password="QX@ZJ@KV@WQ@", debug=True)
@given(password=PASSWORDS, debug=st.booleans())
def test_no_part_of_a_hostile_database_password_is_ever_shown(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    password: str,
    debug: bool,
) -> None:
    """A DSN password with unencoded `@ : / % # ? &` and spaces, on connections that fail:
    a closed port (URL as written, and key=value), and the test server refusing the login
    (URL percent-encoded, a role it does not know). `dbops doctor`, `dbops jobs list` and
    `dbops db migrate --yes` (destructive: its failure goes to the action log) show no part
    of the password longer than 3 characters: stdout, stderr, --debug, the action log."""
    closed = free_port()
    dsns = {
        "url-closed-port": f"postgresql://dbops:{password}@127.0.0.1:{closed}/app",
        "kv-closed-port": (
            f"host=127.0.0.1 port={closed} user=dbops password={kv_quoted(password)} dbname=app"
        ),
        "kv-unquoted": f"host=127.0.0.1 port={closed} user=dbops password={password} dbname=x",
        "url-refused-login": url_with_password(
            database_url, quote(password, safe=""), user="dbops_no_such_role"
        ),
    }
    fallback = tmp_path / "data" / "action-log.jsonl"
    fallback.unlink(missing_ok=True)
    seen = Seen()
    for label, dsn in dsns.items():
        monkeypatch.setenv("DATABASE_URL", dsn)
        for args in (["doctor"], ["jobs", "list"], ["db", "migrate", "--yes"]):
            result = seen.run(args, {2, 3, 5}, debug=debug, label=f"[{label}] ")
            assert "Error:" in result.stderr or "FAIL" in result.stdout + result.stderr
    # `db migrate` logs a failure inside its recorder (a DSN libpq cannot parse: a `%` that
    # starts no escape, an unquoted space) to the local file, the database being unusable.
    if "%" in password or " " in password:
        assert fallback.exists()
    logged = (
        [json.loads(line) for line in fallback.read_text().splitlines()]
        if fallback.exists()
        else []
    )
    assert all(r["command"] == "db migrate" and r["outcome"] == "error" for r in logged)
    assert all(r["error"] for r in logged)

    parts = password_parts(password) | {quote(password, safe="")}
    texts = list(seen.outputs)
    if fallback.exists():
        texts.append(("action log (fallback file)", fallback.read_text()))
    texts += [(f"table {t}", text) for t, text in database_rows(database_url)]
    found = [
        f"{label}: {part!r} in ...{text[max(0, text.index(part) - 80) : text.index(part) + 40]!r}"
        for label, text in texts
        for part in sorted(parts)
        if part in text
    ]
    assert not found, f"password {password!r} leaked:\n" + "\n".join(found[:20])
