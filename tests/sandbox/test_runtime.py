"""The sandbox's lifecycle against real servers: up, up again, down, up after down.

Each test runs in the per-test DBOPS_DATA_DIR / DBOPS_CONFIG_DIR set by conftest, so
every sandbox here is private and stopped before the test ends.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from dbops.errors import ConfigError
from dbops.sandbox import runtime
from dbops.settings import profile_values
from tests.helpers import pgdata_parent


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _http_refused(endpoint: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(f"{endpoint}/moto-api/", timeout=2)
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, OSError):
        return True
    return False


def _pg_refused(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.OperationalError:
        return True
    return False


@pytest.fixture(autouse=True)
def private_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private data folder, and a sandbox stopped whatever the test did.

    The folder is outside pytest's basetemp: every pytest session that starts (even
    another one on this machine) chmods `/tmp/pytest-of-<user>` back to 0700, which
    the `pgserver` system user that runs postgres as root must be able to traverse.
    """
    folder = tempfile.mkdtemp(prefix="dbops-sbx-test-", dir=pgdata_parent())
    monkeypatch.setenv("DBOPS_DATA_DIR", folder)
    yield
    try:
        runtime.down()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_up_starts_both_and_records_state() -> None:
    result = runtime.up()

    assert result.already_running is False
    assert sorted(result.started) == ["postgres", "sqs"]
    assert result.status.running and result.status.postgres.running and result.status.sqs.running
    assert any(m.startswith("app/") for m in result.migrations_applied)
    assert any(m.startswith("0001") for m in result.migrations_applied)

    state = runtime.load_state()
    assert state is not None
    assert state.database_url and state.database_url.startswith("postgresql://postgres:@/")
    assert result.schema_name == state.schema_name == "standard"
    assert json.loads(runtime.state_path().read_text())["schema"] == "standard"
    assert state.moto_port and state.sqs_endpoint == f"http://127.0.0.1:{state.moto_port}"
    assert state.main_queue_url and state.main_queue_url.endswith("/dbops-jobs")
    assert state.dlq_url and state.dlq_url.endswith("/dbops-jobs-dlq")
    assert runtime.pgdata_path() == Path(state.pgdata)
    assert runtime.state_path().parent == runtime.sandbox_dir()

    # The profile points at exactly these servers.
    profile = profile_values("sandbox")
    assert profile == {
        "database_url": state.database_url,
        "sqs_queue_url": state.main_queue_url,
        "sqs_dlq_url": state.dlq_url,
        "aws_endpoint_url_sqs": state.sqs_endpoint,
        "aws_region": "us-east-1",
        "sandbox": True,
    }

    # Queues carry the attributes the backend uses.
    with runtime.connected() as conn:
        main = conn.queues.get_attributes(state.main_queue_url)
        dlq = conn.queues.get_attributes(state.dlq_url)
        tables = conn.store.query(
            "select count(*) as n from information_schema.tables where table_name in "
            "('jobs', 'job_results', 'worker_heartbeats', 'queue_history',"
            " 'rate_limit_requests', 'dbops_action_log')"
        )
    assert main["VisibilityTimeout"] == "300"
    assert main["ReceiveMessageWaitTimeSeconds"] == "20"
    redrive = json.loads(main["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 3
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert dlq["MessageRetentionPeriod"] == "1209600"
    assert tables[0]["n"] == 6


def test_a_state_file_without_a_schema_is_the_standard_one() -> None:
    """state.json written before schema variants existed still loads."""
    state = runtime.SandboxState.model_validate_json('{"pgdata": "/tmp/x"}')
    assert state.schema_name == "standard"
    assert json.loads(state.model_dump_json())["schema"] == "standard"
    legacy = runtime.SandboxState.model_validate({"pgdata": "/tmp/x", "schema": "legacy"})
    assert legacy.schema_name == "legacy"


def test_up_again_is_a_noop_but_restores_a_missing_profile(isolated_env: Path) -> None:
    first = runtime.up()
    second = runtime.up()

    assert second.already_running is True
    assert second.started == []
    assert second.migrations_applied == []
    assert second.profile_written is False
    assert second.status.postgres.pid == first.status.postgres.pid
    assert second.status.sqs.pid == first.status.sqs.pid

    (isolated_env / "config.toml").unlink()
    third = runtime.up()

    assert third.already_running is True and third.profile_written is True
    assert third.status.sqs.pid == first.status.sqs.pid
    assert profile_values("sandbox")["sqs_queue_url"] == first.status.main_queue_url


def test_down_stops_both_and_up_restarts() -> None:
    runtime.up()
    state = runtime.load_state()
    assert state is not None and state.database_url and state.sqs_endpoint
    assert state.moto_pid and state.postgres_pid
    socket_file = Path(state.database_url.split("host=", 1)[1]) / ".s.PGSQL.5432"
    assert socket_file.exists()

    result = runtime.down()

    assert len(result.stopped) == 2 and result.not_running == []
    assert result.stopped[0].startswith(f"postgres (pid {state.postgres_pid}")
    assert result.stopped[1].startswith(f"sqs (moto pid {state.moto_pid}")
    assert _gone(state.moto_pid) and _gone(state.postgres_pid)
    assert _http_refused(state.sqs_endpoint)
    assert _pg_refused(state.database_url)
    assert not socket_file.exists()
    assert runtime.status().running is False
    with pytest.raises(ConfigError, match="not running"):
        runtime.require_running()

    # Starting again in the same process really starts a new server (no stale handle).
    again = runtime.up()
    assert sorted(again.started) == ["postgres", "sqs"]
    assert again.status.postgres.pid != state.postgres_pid
    assert again.migrations_applied == []  # the data folder kept the schema


def test_down_when_nothing_runs() -> None:
    result = runtime.down()
    assert result.stopped == []
    assert result.not_running == ["postgres", "sqs"]


def test_prepare_environment_sets_a_private_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)

    folder = runtime.prepare_environment()

    runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
    assert runtime_dir == folder / "run"
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700


def test_prepare_environment_keeps_an_existing_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "mine"))
    runtime.prepare_environment()
    assert os.environ["XDG_RUNTIME_DIR"] == str(tmp_path / "mine")
