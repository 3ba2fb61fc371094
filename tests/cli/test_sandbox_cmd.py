"""`dbops sandbox ...` through the CLI, against real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import invoke, one_line_error, pgdata_parent

HEAVY = {"pgserver", "moto", "boto3", "botocore", "psycopg", "supabase", "httpx"}


@pytest.fixture(scope="module")
def sandbox_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One sandbox for this module, started through the CLI; stopped at the end."""
    # Data outside pytest's basetemp: see `outside_basetemp`.
    data = tempfile.mkdtemp(prefix="dbops-sbx-test-", dir=pgdata_parent())
    base = tmp_path_factory.mktemp("sbx-cli")
    dirs: dict[str, Any] = {"DBOPS_DATA_DIR": data, "DBOPS_CONFIG_DIR": str(base / "config")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in dirs.items():
            mp.setenv(key, value)
        first = invoke(["sandbox", "up", "-o", "json"]).json
    dirs["first_up"] = first
    yield dirs
    with pytest.MonkeyPatch.context() as mp:
        for key in ("DBOPS_DATA_DIR", "DBOPS_CONFIG_DIR"):
            mp.setenv(key, dirs[key])
        try:
            invoke(["sandbox", "down"], code=None)
        finally:
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def outside_basetemp(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A data folder outside pytest's basetemp.

    Any pytest session starting on this machine chmods `/tmp/pytest-of-<user>` back to
    0700, and as root postgres runs as the `pgserver` user, who must traverse the path.
    """
    folder = tempfile.mkdtemp(prefix="dbops-sbx-test-", dir=pgdata_parent())
    monkeypatch.setenv("DBOPS_DATA_DIR", folder)
    yield folder
    try:
        invoke(["sandbox", "down"], code=None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sandbox(sandbox_dirs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key in ("DBOPS_DATA_DIR", "DBOPS_CONFIG_DIR"):
        monkeypatch.setenv(key, sandbox_dirs[key])
    return sandbox_dirs


def test_up_writes_a_working_profile(sandbox: dict[str, Any]) -> None:
    first = sandbox["first_up"]
    assert first["already_running"] is False
    assert sorted(first["started"]) == ["postgres", "sqs"]
    assert first["profile_written"] is True

    report = invoke(["doctor", "--profile", "sandbox", "-o", "json"]).json

    assert report["ok"] is True
    assert report["exit_code"] == 0
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    for name in (
        "configuration",
        "database reachable",
        "dbops migrations",
        "SQS main queue",
        "SQS dead-letter queue",
        "redrive policy",
    ):
        assert statuses[name] == "pass", report
    assert all(c["status"] != "fail" for c in report["checks"])


def test_up_again_is_a_noop_that_says_so(sandbox: dict[str, Any]) -> None:
    before = invoke(["sandbox", "status", "-o", "json"]).json

    again = invoke(["sandbox", "up"])
    data = invoke(["sandbox", "up", "-o", "json"]).json

    assert "already running" in again.stderr and "nothing to do" in again.stderr
    assert data["already_running"] is True and data["started"] == []
    assert data["status"]["postgres"]["pid"] == before["postgres"]["pid"]
    assert data["status"]["sqs"]["pid"] == before["sqs"]["pid"]


def test_status(sandbox: dict[str, Any]) -> None:
    data = invoke(["sandbox", "status", "-o", "json"]).json
    assert data["running"] is True
    assert data["postgres"]["running"] and data["sqs"]["running"]
    assert data["sqs"]["detail"].startswith("http://127.0.0.1:")
    assert data["main_queue_url"].endswith("/dbops-jobs")

    table = invoke(["sandbox", "status"])
    assert "postgres" in table.stdout and "sqs" in table.stdout


def test_env_prints_exports_that_work(sandbox: dict[str, Any], tmp_path: Path) -> None:
    out = invoke(["sandbox", "env"]).stdout
    lines = out.splitlines()
    assert lines and all(line.startswith("export ") for line in lines)
    names = [line.split()[1].split("=", 1)[0] for line in lines]
    for name in (
        "DATABASE_URL",
        "SQS_QUEUE_URL",
        "SQS_DLQ_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_REGION",
        "DBOPS_PROFILE",
    ):
        assert name in names

    # A shell can evaluate them, and the DSN they give connects.
    script = tmp_path / "env.sh"
    script.write_text(out + 'printf "%s" "$DATABASE_URL"\n')
    dsn = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True).stdout
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)

    as_json = invoke(["sandbox", "env", "-o", "json"]).json
    assert as_json["DATABASE_URL"] == dsn
    assert as_json["SQS_QUEUE_URL"].endswith("/dbops-jobs")


def test_seed_json_counts(sandbox: dict[str, Any]) -> None:
    data = invoke(["sandbox", "seed", "--scenario", "incident", "-o", "json"]).json
    assert data["scenario"] == "incident"
    assert data["stale_jobs"] > 0 and data["dlq_messages"] > 0
    assert data["orphaned_pending_jobs"] > 0 and data["long_running_job_id"]

    clean = invoke(["sandbox", "seed", "--scenario", "clean", "-o", "json"]).json
    assert clean["stale_jobs"] == 0 and clean["dlq_messages"] == 0

    table = invoke(["sandbox", "seed"])
    assert "seeded scenario 'incident'" in table.stderr  # off a terminal, titles go to stderr


def test_env_exports_work_for_boto3_without_aws_region(
    sandbox: dict[str, Any], tmp_path: Path
) -> None:
    """boto3 and aws-cli v1 ignore AWS_REGION: the exports carry AWS_DEFAULT_REGION too."""
    exports = invoke(["sandbox", "env"]).stdout
    values = invoke(["sandbox", "env", "-o", "json"]).json
    assert values["AWS_DEFAULT_REGION"] == values["AWS_REGION"] == "us-east-1"
    script = tmp_path / "region.sh"
    script.write_text(
        exports
        + f'{sys.executable} -c \'import boto3, os; c = boto3.client("sqs"); '
        + 'print(c.meta.region_name); c.get_queue_url(QueueName="dbops-jobs")\'\n'
    )
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_CONFIG_FILE": "/dev/null"}
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=bare)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "us-east-1"


def test_reseed_gives_the_documented_scenario_again(sandbox: dict[str, Any]) -> None:
    """After a recovery, a re-seed forgets it: 12 orphans, no recoveries, fresh ids."""
    first = invoke(["sandbox", "seed", "-o", "json"]).json
    assert first["orphaned_pending_jobs"] == 12 and first["fresh_ids"] is True
    profile = ["--profile", "sandbox"]
    recovered = invoke(["jobs", "recover", "--yes", "-o", "json", *profile]).json
    assert recovered["requeued"] > 0
    invoke(["jobs", "requeue", "--orphans", "--yes", "-o", "json", *profile])
    assert invoke(["jobs", "orphans", "-o", "json", *profile]).json == []
    assert invoke(["log", "-o", "json", *profile]).json  # the recovery was logged
    journals = Path(sandbox["DBOPS_DATA_DIR"]) / "redrive-journal"
    from dbops.services.redrive.journal import journal_path

    env = invoke(["sandbox", "env", "-o", "json"]).json
    journals.mkdir(mode=0o700, exist_ok=True)
    journal = journal_path(journals, env["SQS_DLQ_URL"])
    journal.write_text('{"v": 1}\n')
    other = journal_path(journals, "https://sqs.example/123/someone-else")
    other.write_text('{"v": 1}\n')

    second = invoke(["sandbox", "seed", "-o", "json"]).json

    orphans = invoke(["jobs", "orphans", "-o", "json", *profile]).json
    assert len(orphans) == second["orphaned_pending_jobs"] == 12
    stale = invoke(["jobs", "stale", "-o", "json", *profile]).json
    assert len(stale) == second["stale_jobs"] and {j["recoveries"] for j in stale} == {0}
    assert invoke(["log", "-o", "json", *profile]).json == []
    assert second["long_running_job_id"] != first["long_running_job_id"]  # fresh ids
    assert not journal.exists() and other.exists()  # only the sandbox queues' journals


def test_seed_rejects_an_unknown_scenario(sandbox: dict[str, Any]) -> None:
    result = invoke(["sandbox", "seed", "--scenario", "chaos"], code=2)
    assert "chaos" in result.stderr


# --------------------------------------------------------------------------- schema variants
def test_status_reports_the_schema(sandbox: dict[str, Any]) -> None:
    assert sandbox["first_up"]["schema"] == "standard"
    assert sandbox["first_up"]["switched_from"] is None
    data = invoke(["sandbox", "status", "-o", "json"]).json
    assert (data["schema"], data["database"]) == ("standard", "postgres")
    assert "(schema standard)" in invoke(["sandbox", "status"]).stderr


def test_seed_refuses_a_schema_the_sandbox_does_not_run(sandbox: dict[str, Any]) -> None:
    before = invoke(["sandbox", "seed", "--schema", "standard", "-o", "json"]).json
    assert (before["schema"], before["customer_ids"]) == ("standard", "text")

    result = invoke(["sandbox", "seed", "--schema", "legacy"], code=6)

    line = one_line_error(result.stderr)
    assert "runs the standard schema, not legacy" in line
    assert "dbops sandbox up --schema legacy" in line
    assert invoke(["sandbox", "status", "-o", "json"]).json["schema"] == "standard"


def _jobs_in(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("select count(*) from jobs").fetchone()
        assert row is not None
        return int(row[0])


def test_up_switches_to_the_legacy_schema_and_back(sandbox: dict[str, Any]) -> None:
    standard = invoke(["sandbox", "seed", "--scenario", "clean", "-o", "json"]).json
    standard_dsn = invoke(["sandbox", "env", "-o", "json"]).json["DATABASE_URL"]
    try:
        switched = invoke(["sandbox", "up", "--schema", "legacy", "-o", "json"]).json
        assert switched["already_running"] is True and switched["started"] == []
        assert (switched["schema"], switched["switched_from"]) == ("legacy", "standard")
        assert switched["profile_written"] is True
        status = invoke(["sandbox", "status", "-o", "json"]).json
        assert (status["schema"], status["database"]) == ("legacy", "dbops_legacy")
        legacy_dsn = invoke(["sandbox", "env", "-o", "json"]).json["DATABASE_URL"]
        assert "/dbops_legacy?" in legacy_dsn

        seeded = invoke(["sandbox", "seed", "-o", "json"]).json
        assert (seeded["schema"], seeded["customer_ids"]) == ("legacy", "uuid")
        assert seeded["statuses_mapped"] == {"cancelled": "failed"}
        assert seeded["legacy_history_rows"] > 0
        assert "(legacy schema)" in invoke(["sandbox", "seed", "--schema", "legacy"]).stderr
        invoke(["sandbox", "seed", "--schema", "standard"], code=6)
        # The profile follows: commands see the legacy data.
        stale = invoke(["jobs", "stale", "--profile", "sandbox", "-o", "json"]).json
        assert len(stale) == seeded["stale_jobs"]
        assert invoke(["doctor", "--profile", "sandbox", "-o", "json"]).json["ok"] is True

        again = invoke(["sandbox", "up", "-o", "json"]).json  # no --schema: keep legacy
        assert (again["schema"], again["switched_from"]) == ("legacy", None)
    finally:
        back = invoke(["sandbox", "up", "--schema", "standard", "-o", "json"], code=None)
    assert back.code == 0, back.stderr
    assert (back.json["schema"], back.json["switched_from"]) == ("standard", "legacy")
    assert invoke(["sandbox", "env", "-o", "json"]).json["DATABASE_URL"] == standard_dsn
    # Both schemas kept their data.
    assert _jobs_in(standard_dsn) == standard["jobs"]
    assert _jobs_in(legacy_dsn) == seeded["jobs"]


def test_up_with_the_legacy_schema_from_scratch(outside_basetemp: str) -> None:
    up = invoke(["sandbox", "up", "--schema", "legacy", "-o", "json"]).json
    assert up["already_running"] is False and up["schema"] == "legacy"
    assert "app_legacy/0001_app_schema" in up["migrations_applied"]
    assert "0002_jobs" in up["migrations_applied"]
    assert invoke(["sandbox", "status", "-o", "json"]).json["schema"] == "legacy"

    seeded = invoke(["sandbox", "seed", "--scenario", "incident", "-o", "json"]).json
    assert seeded["schema"] == "legacy" and seeded["stale_jobs"] > 0

    recovered = invoke(["jobs", "recover", "--profile", "sandbox", "--yes", "-o", "json"]).json
    assert recovered["sent"] == seeded["stale_jobs"]
    assert invoke(["jobs", "stale", "--profile", "sandbox", "-o", "json"]).json == []


def test_up_rejects_an_unknown_schema(outside_basetemp: str) -> None:
    result = invoke(["sandbox", "up", "--schema", "oracle"], code=2)
    assert "oracle" in result.stderr
    assert invoke(["sandbox", "status", "-o", "json"]).json["running"] is False


def test_commands_need_a_running_sandbox(outside_basetemp: str) -> None:
    # Fresh per-test folders: nothing runs there.
    for args in (["sandbox", "env"], ["sandbox", "seed"]):
        result = invoke(args, code=3)
        assert "sandbox is not running" in one_line_error(result.stderr)
    status = invoke(["sandbox", "status", "-o", "json"]).json
    assert status["running"] is False
    down = invoke(["sandbox", "down"])
    assert "nothing to stop" in down.stderr


def test_down_stops_both(outside_basetemp: str) -> None:
    """A private sandbox in this test's folders: up, then down, then nothing answers."""
    up = invoke(["sandbox", "up", "-o", "json"]).json
    try:
        env = invoke(["sandbox", "env", "-o", "json"]).json
        dsn, endpoint = env["DATABASE_URL"], env["AWS_ENDPOINT_URL_SQS"]
        socket_file = Path(dsn.split("host=", 1)[1]) / ".s.PGSQL.5432"
        assert socket_file.exists()
    finally:
        down = invoke(["sandbox", "down"])

    assert f"stopped postgres (pid {up['status']['postgres']['pid']}" in down.stderr
    assert f"stopped sqs (moto pid {up['status']['sqs']['pid']}" in down.stderr
    assert not socket_file.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.URLError) as caught:
        opener.open(f"{endpoint}/moto-api/", timeout=2)
    assert not isinstance(caught.value, urllib.error.HTTPError)
    assert invoke(["sandbox", "status", "-o", "json"]).json["running"] is False


# --------------------------------------------------------------------------- processes
def _run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None  # as if the extra were not installed\n"
        "from dbops.cli.main import run\n"
        "sys.argv = ['dbops', *sys.argv[1:]]\n"
        "run()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


@pytest.mark.parametrize(
    "args",
    [
        ["sandbox", "up"],
        ["sandbox", "down"],
        ["sandbox", "status"],
        ["sandbox", "env"],
        ["sandbox", "seed"],
        ["demo"],
    ],
)
def test_missing_extra_exits_3_with_install_hint(args: list[str]) -> None:
    result = _run_without("pgserver", *args)
    assert result.returncode == 3, result.stderr
    line = one_line_error(result.stderr)
    assert "sandbox" in line and "dbops[sandbox]" in line
    assert result.stdout == ""


def test_missing_moto_exits_3() -> None:
    result = _run_without("moto", "sandbox", "up")
    assert result.returncode == 3, result.stderr
    assert "dbops[sandbox]" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args", [["--help"], ["sandbox", "--help"], ["demo", "--help"], ["sandbox", "up", "--help"]]
)
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dbops", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert imported, "no importtime output"
    assert not (imported & HEAVY), sorted(imported & HEAVY)
