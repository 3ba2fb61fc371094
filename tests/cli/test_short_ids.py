"""Short ids through the CLI (issue 15 item 4): `jobs show|requeue|fail` and `dlq show`
take a unique prefix of at least 6 hex characters; ambiguous is exit 2 naming the
candidates, no match exit 4, too short or not hex exit 2; JSON keeps whole ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.helpers import invoke, one_line_error


def _ids_sharing(prefix: str, n: int) -> list[str]:
    return [str(uuid.UUID(prefix + uuid.uuid4().hex[len(prefix) :])) for _ in range(n)]


def _insert_jobs(conn: Any, job_ids: list[str], status: str = "pending") -> None:
    for job_id in job_ids:
        # customer_id is text in the standard schema and uuid in the legacy one
        conn.execute(
            "insert into jobs (id, customer_id, status, updated_at) "
            "values (%s, %s, %s, now() - interval '1 hour')",
            [job_id, str(uuid.uuid4()), status],
        )


def _actions(conn: Any, command: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select arguments from dbops_action_log where command = %s order by id", [command]
    ).fetchall()


def test_jobs_commands_take_a_six_character_prefix(
    schema_variant: str, variant_env: Any, variant_db: Any
) -> None:
    (job,) = _ids_sharing("5a5a5a", 1)
    (other,) = _ids_sharing("6b6b6b", 1)
    _insert_jobs(variant_db, [job, other])

    shown = invoke(["jobs", "show", job[:6], "-o", "json"]).json
    assert shown["job"]["id"] == job  # JSON keeps the whole id
    assert invoke(["jobs", "show", job[:13].upper(), "-o", "json"]).json["job"]["id"] == job

    failed = invoke(
        ["jobs", "fail", other[:6], "--reason", "bad input", "--yes", "-o", "json"]
    ).json
    assert [(j["job_id"], j["status"]) for j in failed["jobs"]] == [(other, "failed")]
    # the action log records the whole id the prefix named
    assert _actions(variant_db, "jobs fail")[-1]["arguments"]["job_ids"] == [other]

    requeued = invoke(["jobs", "requeue", other[:8], "--dry-run", "-o", "json"]).json
    assert [j["job_id"] for j in requeued["jobs"]] == [other]
    status = variant_db.execute("select status from jobs where id = %s", [other]).fetchone()
    assert status["status"] == "failed"  # a dry run changed nothing


def test_ambiguous_prefix_is_a_usage_error_listing_candidates(env: Any, db: Any) -> None:
    shared = _ids_sharing("c0ffee", 7)
    _insert_jobs(db, shared)

    for args in (
        ["jobs", "show", "c0ffee"],
        ["jobs", "fail", "c0ffee", "--reason", "x", "--yes"],
        ["jobs", "requeue", "c0ffee", "--yes"],
    ):
        result = invoke(args, code=2)
        line = one_line_error(result.stderr)
        assert "ambiguous" in line and "and more" in line
        assert sum(s in line for s in shared) == 5  # at most 5 candidates
    # nothing changed and nothing was logged
    assert (
        db.execute("select count(*) as n from jobs where status <> 'pending'").fetchone()["n"] == 0
    )
    assert _actions(db, "jobs fail") == [] and _actions(db, "jobs requeue") == []
    # one more character that only one of them has resolves it
    chosen = shared[0]
    unique = next(
        chosen[:n] for n in range(7, 37) if sum(s.startswith(chosen[:n]) for s in shared) == 1
    )
    assert invoke(["jobs", "show", unique, "-o", "json"]).json["job"]["id"] == chosen


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["jobs", "show", "abcdef"], 4, "no job id starts with 'abcdef'"),
        (["jobs", "fail", "abcdef12", "--reason", "x", "--yes"], 4, "no job id starts with"),
        (["jobs", "requeue", "abcdef", "--yes"], 4, "no job id starts with"),
        (["jobs", "show", "abcde"], 2, "at least 6 hex characters"),
        (["jobs", "requeue", "abc", "--yes"], 2, "at least 6 hex characters"),
        (["jobs", "fail", "ghijkl", "--reason", "x", "--yes"], 2, "not a UUID"),
        (["dlq", "show", "abcde"], 2, "at least 6 hex characters"),
        (["dlq", "show", "abcdef"], 4, "no message id starts with 'abcdef'"),
    ],
)
def test_short_id_errors(env: Any, args: list[str], code: int, text: str) -> None:
    result = invoke(args, code=code)
    assert text in one_line_error(result.stderr)
    assert result.stdout == ""


def test_jobs_show_prefix_over_supabase(db: Any, supabase_env: str) -> None:
    shared = _ids_sharing("d00d1e", 2)
    _insert_jobs(db, shared)
    assert invoke(["jobs", "show", shared[0][:10], "-o", "json"]).json["job"]["id"] == shared[0]
    line = one_line_error(invoke(["jobs", "show", "d00d1e"], code=2).stderr)
    assert shared[0] in line and shared[1] in line
    assert "no job id starts" in one_line_error(invoke(["jobs", "show", "eeeeee"], code=4).stderr)


def test_dlq_show_takes_a_prefix(env: Any) -> None:
    sent = [
        env.client.send_message(QueueUrl=env.dlq_url, MessageBody=json.dumps({"job_id": f"j{i}"}))[
            "MessageId"
        ]
        for i in range(3)
    ]
    target = sent[1]
    unique = next(
        target[:n]
        for n in range(6, 37)
        if target[n - 1] != "-" and sum(s.startswith(target[:n]) for s in sent) == 1
    )
    shown = invoke(["dlq", "show", unique, "-o", "json"]).json
    assert shown["message_id"] == target and shown["body"]["job_id"] == "j1"
    # nothing was consumed
    assert env.visible(env.dlq_url) == 3
