from dbops.adapters.postgres import PostgresStore
from dbops.errors import RefusedError
from dbops.services.actionlog import ActionRecorder
from tests.helpers import invoke


def test_log_lists_recorded_actions_with_secrets_redacted(db_env, db):
    store = PostgresStore(db_env)
    with ActionRecorder(
        store=store,
        command="dlq redrive",
        arguments={
            "max": 5,
            "webhook_url": "https://hooks.slack.com/x/SECRETHOOK",
            "identifier": "api_key:sk_live_0123456789abcdef",
        },
        operator="alice",
        caller_arn="arn:aws:iam::123456789012:user/alice",
    ) as rec:
        rec.counts = {"moved": 5}
    try:
        with ActionRecorder(store=store, command="jobs recover", arguments={}, operator="bob"):
            raise RefusedError("not confirmed")
    except RefusedError:
        pass
    entries = invoke(["log", "-o", "json"]).json
    assert [e["command"] for e in entries] == ["jobs recover", "dlq redrive"]
    refused, redrive = entries
    assert refused["outcome"] == "refused" and refused["error"] == "not confirmed"
    assert redrive["outcome"] == "ok" and redrive["counts"] == {"moved": 5}
    assert redrive["operator"] == "alice"
    assert redrive["caller_arn"].endswith(":user/alice")
    assert redrive["arguments"]["webhook_url"] == "****"
    assert redrive["arguments"]["identifier"] == "api_key:****cdef"
    raw = str(db.execute("select arguments::text as a from dbops_action_log").fetchall())
    assert "SECRETHOOK" not in raw and "sk_live_0123456789abcdef" not in raw


def test_log_since_filters_old_rows(db_env, db):
    db.execute(
        "insert into dbops_action_log (operator, command, outcome, started_at) values "
        "('old', 'x', 'ok', now() - interval '3 days'), ('new', 'y', 'ok', now())"
    )
    assert [e["operator"] for e in invoke(["log", "-o", "json"]).json] == ["new"]
    assert len(invoke(["log", "--since", "7d", "-o", "json"]).json) == 2
    assert len(invoke(["log", "--since", "7d", "--limit", "1", "-o", "json"]).json) == 1


def test_log_bad_input(db_env):
    assert "--since" in invoke(["log", "--since", "yesterday"], code=2).stderr
    invoke(["log", "--limit", "0"], code=2)


def test_recorder_falls_back_to_a_local_file_when_the_database_is_down(tmp_path):
    import json

    store = PostgresStore("postgresql://u:pw@127.0.0.1:1/x", connect_timeout=1)
    target = tmp_path / "log.jsonl"
    with ActionRecorder(
        store=store,
        command="dlq purge",
        arguments={"yes": True},
        operator="carol",
        fallback_file=target,
    ) as rec:
        rec.counts = {"purged": 3}
    assert rec.written_to == str(target)
    row = json.loads(target.read_text())
    assert row["command"] == "dlq purge" and row["counts"] == {"purged": 3}
    assert row["outcome"] == "ok"


def test_a_refused_destructive_command_is_logged(env, db):
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "values ('ip:192.0.2.1', '/x', now() - interval '3 days')"
    )
    result = invoke(["ratelimit", "cleanup"], code=6)
    assert "without confirmation" in result.stderr
    entries = invoke(["log", "-o", "json"]).json
    refused = [e for e in entries if e["outcome"] == "refused"]
    assert refused and refused[0]["command"] == "ratelimit cleanup"
    assert refused[0]["operator"] == "test-operator"


def _seed_log(db) -> None:
    db.execute(
        "insert into dbops_action_log (operator, command, outcome, started_at) values "
        "('alice', 'dlq redrive', 'ok', now() - interval '5 minutes'), "
        "('alice', 'dlq purge', 'refused', now() - interval '4 minutes'), "
        "('bob', 'dlq redrive', 'error', now() - interval '3 minutes'), "
        "('bob', 'jobs recover', 'dry_run', now() - interval '2 minutes'), "
        "('carol', 'dlqx', 'ok', now() - interval '1 minute')"
    )


def _commands(args: list[str]) -> list[tuple[str, str, str]]:
    rows = invoke(["log", *args, "-o", "json"]).json
    return [(r["operator"], r["command"], r["outcome"]) for r in rows]


def test_log_filters_by_operator_command_and_outcome(db_env, db):
    _seed_log(db)
    assert _commands(["--operator", "bob"]) == [
        ("bob", "jobs recover", "dry_run"),
        ("bob", "dlq redrive", "error"),
    ]
    assert _commands(["--command", "dlq redrive"]) == [
        ("bob", "dlq redrive", "error"),
        ("alice", "dlq redrive", "ok"),
    ]
    # leading words match whole words only: 'dlq' is not a prefix of 'dlqx'
    assert [c for _, c, _ in _commands(["--command", "dlq"])] == [
        "dlq redrive",
        "dlq purge",
        "dlq redrive",
    ]
    assert _commands(["--outcome", "refused"]) == [("alice", "dlq purge", "refused")]
    assert _commands(["--outcome", "ERROR"]) == [("bob", "dlq redrive", "error")]
    assert _commands(["--operator", "alice", "--command", "dlq", "--outcome", "ok"]) == [
        ("alice", "dlq redrive", "ok")
    ]
    assert _commands(["--operator", "nobody"]) == []
    # filters apply before --limit
    assert _commands(["--operator", "alice", "--limit", "1"]) == [("alice", "dlq purge", "refused")]
    table = invoke(["log", "--operator", "nobody"])
    assert "no actions logged" in table.stderr


def test_log_filter_bad_input_exits_2(db_env, db):
    _seed_log(db)
    bad = invoke(["log", "--outcome", "failed"], code=2)
    assert "--outcome" in bad.stderr and "Traceback" not in bad.stderr
    for option in ("--operator", "--command", "--outcome"):
        result = invoke(["log", option, " "], code=2)
        assert option in result.stderr and "Traceback" not in result.stderr
