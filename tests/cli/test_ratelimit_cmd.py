"""`dbops ratelimit ...` through the CLI: success, failure and bad-input paths."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.helpers import invoke, one_line_error, retry_after_bounds

SECRET = "sk_live_SECRET0123456789wxyz"
KEY = f"api_key:{SECRET}"
MASKED = "api_key:****wxyz"
IP = "ip:203.0.113.7"


def hit(db, identifier, endpoint="/api/auth/login", n=1):
    return [
        db.execute("select * from dbops_rate_limit_hit(%s, %s)", (identifier, endpoint)).fetchone()
        for _ in range(n)
    ]


def action_log(db):
    return db.execute(
        "select command, arguments, counts, outcome, dry_run, error, arguments::text as raw "
        "from dbops_action_log order by id"
    ).fetchall()


def no_secret(*texts):
    for text in texts:
        assert SECRET not in text


# --------------------------------------------------------------------------- list / set
@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


def last_error(stderr):
    """Mutations preview on stderr first; the error is the last line."""
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "Traceback" not in stderr
    return line


def test_list_json_contract(db_env):
    rules = invoke(["ratelimit", "list", "-o", "json"]).json
    assert [r["name"] for r in rules][-1] == "public"
    for rule in rules:
        assert {"name", "limit", "window_seconds", "override_expires_at"} <= set(rule)
    assert {r["name"]: r["limit"] for r in rules} == {
        "auth": 5,
        "staff": 30,
        "public": 100,
        "admin": 10,
    }
    table = invoke(["ratelimit", "list"])
    assert "auth" in table.stdout and "/api/auth/%" in table.stdout


def test_list_over_the_supabase_transport(supabase_env):
    rules = invoke(["ratelimit", "list", "-o", "json"]).json
    assert {r["name"] for r in rules} == {"auth", "staff", "public", "admin"}


def test_set_temporary_override(db_env, db):
    out = invoke(
        [
            "ratelimit",
            "set",
            "public",
            "--limit",
            "300",
            "--window",
            "1m",
            "--for",
            "2h",
            "--reason",
            "launch",
            "--yes",
            "-o",
            "json",
        ]
    ).json
    assert out["change"] == "override" and out["after"]["limit"] == 300
    assert out["before"]["limit"] == 100
    [rule] = [r for r in invoke(["ratelimit", "list", "-o", "json"]).json if r["name"] == "public"]
    assert rule["limit"] == 300 and rule["override_expires_at"] is not None
    assert rule["override_reason"] == "launch" and rule["base_limit"] == 100
    [row] = action_log(db)
    assert row["command"] == "ratelimit set" and row["outcome"] == "ok"
    assert row["counts"] == {"rules_changed": 1, "overrides_created": 1}
    assert row["arguments"]["for_seconds"] == 7200


def test_set_permanent_and_table_output(db_env, db):
    result = invoke(["ratelimit", "set", "auth", "--limit", "10", "--window", "30m", "--yes"])
    assert "auth" in result.stdout
    assert hit(db, IP)[0]["limit"] == 10
    assert hit(db, IP)[0]["window_seconds"] == 1800


def test_set_dry_run_changes_nothing(db_env, db):
    out = invoke(["ratelimit", "set", "staff", "--limit", "1", "--dry-run", "-o", "json"]).json
    assert out["dry_run"] is True and out["after"] is None
    assert hit(db, IP, "/api/staff/x")[0]["limit"] == 30
    assert action_log(db)[0]["outcome"] == "dry_run"


def test_set_refuses_without_yes_off_a_tty(db_env, db):
    result = invoke(["ratelimit", "set", "staff", "--limit", "1"], code=6)
    assert "--yes" in last_error(result.stderr)
    assert hit(db, IP, "/api/staff/x")[0]["limit"] == 30


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["set", "nope", "--limit", "5", "--yes"], 4),
        (["set", "auth", "--limit", "0", "--yes"], 2),
        (["set", "auth", "--yes"], 2),
        (["set", "auth", "--limit", "5", "--window", "soon", "--yes"], 2),
        (["set", "auth", "--limit", "5", "--for", "0s", "--yes"], 2),
        (["enable", "nope", "--yes"], 4),
        (["disable", "nope", "--yes"], 4),
    ],
)
def test_set_and_toggle_bad_input(db_env, args, code):
    invoke(["ratelimit", *args], code=code)


def test_disable_then_enable(db_env, db):
    out = invoke(["ratelimit", "disable", "auth", "--yes", "-o", "json"]).json
    assert out["after"]["enabled"] is False
    assert all(r["allowed"] for r in hit(db, IP, n=8))
    invoke(["ratelimit", "enable", "auth", "--yes"])
    assert not hit(db, IP)[0]["allowed"]
    assert [r["command"] for r in action_log(db)] == ["ratelimit disable", "ratelimit enable"]
    invoke(["ratelimit", "disable", "auth"], code=6)


# --------------------------------------------------------------------------- top / status
def test_top_json_contract_masks_keys(db_env, db):
    hit(db, KEY, n=6)
    hit(db, IP, "/api/jobs", n=3)
    result = invoke(["ratelimit", "top", "--since", "15m", "--limit", "20", "-o", "json"])
    no_secret(result.stdout, result.stderr)
    entries = result.json
    assert [e["identifier"] for e in entries] == [MASKED, IP]
    for entry in entries:
        assert {
            "identifier",
            "endpoint",
            "requests",
            "limit",
            "percent_of_limit",
            "throttled",
            "blocked",
        } <= set(entry)
    assert entries[0]["throttled"] is True and entries[0]["percent_of_limit"] == 100.0
    table = invoke(["ratelimit", "top"])
    assert MASKED in table.stdout
    no_secret(table.stdout)


def test_top_empty_and_bad_since(db_env):
    assert invoke(["ratelimit", "top", "-o", "json"]).json == []
    invoke(["ratelimit", "top"])
    one_line_error(invoke(["ratelimit", "top", "--since", "yesterday"], code=2).stderr)


def test_top_sort_denied_by_default_percent_on_request(db_env, db):
    hit(db, KEY, n=6)  # 5 allowed (100 % of auth's 5), 1 denied
    hit(db, IP, "/api/jobs", n=3)
    db.execute(
        "insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied) "
        "values (date_trunc('minute', now()), 'ip:198.51.100.9', '/api/jobs', 40)"
    )
    ranked = invoke(["ratelimit", "top", "-o", "json"]).json
    assert [e["identifier"] for e in ranked] == ["ip:198.51.100.9", MASKED, IP]
    assert [e["denied"] for e in ranked] == [40, 1, 0]
    by_percent = invoke(["ratelimit", "top", "--sort", "percent", "-o", "json"]).json
    assert [e["identifier"] for e in by_percent][:2] == [MASKED, IP]
    by_requests = invoke(["ratelimit", "top", "--sort", "requests", "-o", "json"]).json
    assert [e["requests"] for e in by_requests] == [40, 6, 3]
    invoke(["ratelimit", "top", "--sort", "loudest"], code=2)


def test_status(db_env, db):
    hit(db, KEY, n=5)
    result = invoke(["ratelimit", "status", KEY, "--endpoint", "/api/auth/login", "-o", "json"])
    no_secret(result.stdout, result.stderr)
    [row] = result.json
    assert row["identifier"] == MASKED
    assert (row["used"], row["remaining"], row["allowed"]) == (5, 0, False)
    table = invoke(["ratelimit", "status", KEY])
    no_secret(table.stdout)
    assert "/api/auth/login" in table.stdout


def test_status_reads_the_identifier_from_stdin(db_env, db):
    hit(db, KEY, n=2)
    [row] = invoke(["ratelimit", "status", "-", "-o", "json"], input=KEY + "\n").json
    assert (row["identifier"], row["used"]) == (MASKED, 2)


@pytest.mark.parametrize("bad", ["1.2.3.4", "ip:999.1.1.1", "api_key:", "token:abc", "sk_live_x"])
def test_bad_identifiers_are_usage_errors(db_env, bad):
    for args in (
        ["status", bad],
        ["reset", bad, "--yes"],
        ["unblock", bad, "--yes"],
        ["block", bad, "--for", "1h", "--reason", "r", "--yes"],
    ):
        result = invoke(["ratelimit", *args], code=2)
        line = one_line_error(result.stderr)
        assert "ip:<IPv4 or IPv6 address> or api_key:<key>" in line
        if not bad.startswith("ip:"):
            assert bad.split(":")[-1] not in line or bad.endswith(":")


# --------------------------------------------------------------------------- reset
def test_reset_makes_the_next_hit_allowed(db_env, db):
    hit(db, KEY, n=5)
    assert not hit(db, KEY)[0]["allowed"]
    result = invoke(["ratelimit", "reset", KEY, "--yes", "-o", "json"])
    no_secret(result.stdout, result.stderr)
    assert result.json["deleted"] == 5 and result.json["identifier"] == MASKED
    assert hit(db, KEY)[0]["allowed"]
    [row] = action_log(db)
    assert row["command"] == "ratelimit reset" and row["counts"]["deleted"] == 5
    assert row["arguments"]["identifier"] == MASKED
    no_secret(row["raw"])


def test_reset_dry_run_refusal_and_nothing_to_do(db_env, db):
    hit(db, IP, n=5)
    assert invoke(["ratelimit", "reset", IP, "--dry-run", "-o", "json"]).json["deleted"] == 0
    invoke(["ratelimit", "reset", IP], code=6)
    assert not hit(db, IP)[0]["allowed"]
    out = invoke(["ratelimit", "reset", "ip:192.0.2.99", "--yes", "-o", "json"]).json
    assert out["requests"] == 0


# --------------------------------------------------------------------------- block / unblock
def test_block_denies_with_retry_after_and_never_logs_the_key(db_env, db):
    result = invoke(
        [
            "ratelimit",
            "block",
            KEY,
            "--for",
            "1h",
            "--reason",
            f"abuse by {KEY}",
            "--yes",
            "-o",
            "json",
        ]
    )
    no_secret(result.stdout, result.stderr)
    assert result.json["identifier"] == MASKED and result.json["expires_at"]
    denied = hit(db, KEY, "/api/jobs")[0]
    assert denied["allowed"] is False and denied["blocked"] is True
    # Retry-After counts down from the block's hour by the time since it was placed.
    expires = db.execute("select expires_at from dbops_rate_limit_blocks").fetchone()["expires_at"]
    assert denied["reset_at"] == expires
    low, high = retry_after_bounds(db, expires, hit_after=expires - timedelta(hours=1))
    assert high == 3600 and low <= denied["retry_after_seconds"] <= high
    [row] = action_log(db)
    assert row["command"] == "ratelimit block" and row["counts"]["blocks_created"] == 1
    assert MASKED in row["raw"]
    no_secret(row["raw"], json.dumps(row["counts"]))

    status = invoke(["ratelimit", "status", KEY, "-o", "json"]).json
    assert all(s["blocked"] for s in status)

    out = invoke(["ratelimit", "unblock", KEY, "--yes", "-o", "json"]).json
    assert out["lifted"] == 1
    assert hit(db, KEY, "/api/jobs")[0]["allowed"]
    result = invoke(["ratelimit", "unblock", KEY, "--yes"], code=4)
    no_secret(one_line_error(result.stderr))
    assert MASKED in result.stderr


def test_block_one_endpoint_dry_run_and_refusal(db_env, db):
    invoke(
        [
            "ratelimit",
            "block",
            IP,
            "--endpoint",
            "/api/jobs",
            "--for",
            "10m",
            "--reason",
            "r",
            "--dry-run",
        ]
    )
    assert hit(db, IP, "/api/jobs")[0]["allowed"]
    invoke(["ratelimit", "block", IP, "--for", "10m", "--reason", "r"], code=6)
    invoke(
        [
            "ratelimit",
            "block",
            IP,
            "--endpoint",
            "/api/jobs",
            "--for",
            "10m",
            "--reason",
            "r",
            "--yes",
        ]
    )
    assert hit(db, IP, "/api/jobs")[0]["blocked"]
    assert hit(db, IP, "/api/other")[0]["allowed"]


@pytest.mark.parametrize(
    "args",
    [
        ["block", IP, "--reason", "r", "--yes"],
        ["block", IP, "--for", "1h", "--yes"],
        ["block", IP, "--for", "forever", "--reason", "r", "--yes"],
        ["block", IP, "--for", "1h", "--reason", "  ", "--yes"],
    ],
)
def test_block_bad_input(db_env, args):
    invoke(["ratelimit", *args], code=2)


def test_unblock_without_a_block_is_not_found(db_env):
    one_line_error(invoke(["ratelimit", "unblock", IP, "--yes"], code=4).stderr)


# --------------------------------------------------------------------------- cleanup
def test_cleanup(db_env, db):
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select 'ip:192.0.2.1', '/api/jobs', now() - interval '2 days' "
        "from generate_series(1, 30)"
    )
    hit(db, IP, n=2)
    dry = invoke(["ratelimit", "cleanup", "--dry-run", "-o", "json"]).json
    assert (dry["requests"], dry["deleted_requests"]) == (30, 0)
    invoke(["ratelimit", "cleanup"], code=6)
    out = invoke(
        ["ratelimit", "cleanup", "--older-than", "1d", "--batch-size", "7", "--yes", "-o", "json"]
    ).json
    assert (out["deleted_requests"], out["batches"]) == (30, 5)
    assert db.execute("select count(*) as n from rate_limit_requests").fetchone()["n"] == 2
    assert action_log(db)[-1]["counts"]["deleted_requests"] == 30
    assert invoke(["ratelimit", "cleanup", "--yes", "-o", "json"]).json["requests"] == 0


@pytest.mark.parametrize(
    "args", [["--older-than", "5m"], ["--older-than", "old"], ["--batch-size", "0"]]
)
def test_cleanup_bad_input(db_env, args):
    invoke(["ratelimit", "cleanup", *args, "--yes"], code=2)


def test_no_database_is_a_config_error():
    one_line_error(invoke(["ratelimit", "list"], code=3).stderr)


def test_block_status_unblock_over_the_supabase_transport(supabase_env, db):
    invoke(["ratelimit", "block", KEY, "--for", "1h", "--reason", "r", "--yes"])
    assert hit(db, KEY, "/api/jobs")[0]["blocked"]
    [row] = invoke(["ratelimit", "status", KEY, "--endpoint", "/api/jobs", "-o", "json"]).json
    assert row["blocked"] is True and row["identifier"] == MASKED
    invoke(["ratelimit", "unblock", KEY, "--yes"])
    assert hit(db, KEY, "/api/jobs")[0]["allowed"]
    assert [r["command"] for r in action_log(db)] == ["ratelimit block", "ratelimit unblock"]
    no_secret(*(r["raw"] for r in action_log(db)))


def test_endpoint_spellings_are_normalised(db_env, db):
    """`/API//auth/login/?x=1` is `/api/auth/login`: the `auth` rule, one window, one block."""
    rows = [
        hit(db, IP, e)[0] for e in ("/API/auth/login", "/api//auth/login", "/api/auth/login?x=1")
    ]
    assert [r["rule_name"] for r in rows] == ["auth"] * 3
    [row] = invoke(["ratelimit", "status", IP, "--endpoint", "/api/AUTH/login/", "-o", "json"]).json
    assert (row["endpoint"], row["rule"], row["used"], row["remaining"]) == (
        "/api/auth/login",
        "auth",
        3,
        2,
    )
    blocked = invoke(
        [
            *("ratelimit", "block", IP, "-e", "/API/Jobs/", "--for", "1h"),
            *("--reason", "r", "--yes", "-o", "json"),
        ]
    ).json
    assert blocked["endpoint"] == "/api/jobs"
    assert hit(db, IP, "/api/jobs?page=2")[0]["blocked"]
    logged = action_log(db)[-1]
    assert (logged["command"], logged["arguments"]["endpoint"]) == ("ratelimit block", "/api/jobs")
