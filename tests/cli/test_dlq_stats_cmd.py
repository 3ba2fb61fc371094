"""`dbops dlq stats` through the CLI: every --by key, odd messages, filters, --top, output
formats, bad input; against moto over HTTP and the test Postgres (and the PostgREST stub)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.cli.test_dlq_cmd import send
from tests.helpers import invoke, one_line_error
from tests.odd_messages import NAMES, ODD, put_odd_messages

ROW_KEYS = {"key", "count", "oldest_age_seconds", "newest_age_seconds", "sample_message_id"}


def stats(*args: str, code: int = 0) -> Any:
    return invoke(["dlq", "stats", *args, "-o", "json"], code=code).json


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["key"]: r["count"] for r in rows}


def receive_counts(env) -> dict[str, int]:
    """MessageId -> ApproximateReceiveCount, read through a peek that releases at once."""
    seen: dict[str, int] = {}
    handles = []
    while True:
        got = env.client.receive_message(
            QueueUrl=env.dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            seen[m["MessageId"]] = int(m["Attributes"]["ApproximateReceiveCount"])
            handles.append(m["ReceiptHandle"])
    for start in range(0, len(handles), 10):
        env.client.change_message_visibility_batch(
            QueueUrl=env.dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ],
        )
    return seen


@pytest.fixture
def mixed(env, job_seed) -> dict[str, Any]:
    """A DLQ with reasons that differ only in numbers, two customers, jobs in the database."""
    done = job_seed.job(status="completed")
    failed = job_seed.job(status="failed")
    bodies = (
        [
            json.dumps(
                {
                    "job_id": done,
                    "customer_id": "acme",
                    "source": "api",
                    "_dlq_reason": f"timeout after {30 + i}s",
                }
            )
            for i in range(4)
        ]
        + [
            json.dumps(
                {
                    "job_id": failed,
                    "customer_id": "beta",
                    "source": "cron",
                    "_dlq_reason": "user bob@corp.io not found",
                }
            )
        ]
        * 2
        + [json.dumps({"job_id": str(uuid.uuid4()), "customer_id": "acme"})]
        + ["plain text, not JSON"]
    )
    ids = send(env.client, env.dlq_url, bodies)
    return {"ids": ids, "done": done, "failed": failed, "total": len(bodies)}


def test_by_reason_default(env, mixed):
    rows = stats()
    assert all(set(r) == ROW_KEYS for r in rows)
    assert counts(rows) == {
        "timeout after <n>s": 4,
        "user <email> not found": 2,
        "(no reason)": 1,
        "(unparsed)": 1,
    }
    assert [r["count"] for r in rows] == sorted((r["count"] for r in rows), reverse=True)
    first = rows[0]
    assert first["sample_message_id"] in mixed["ids"][:4]
    assert 0 <= first["newest_age_seconds"] <= first["oldest_age_seconds"] < 600
    assert "bob@corp.io" not in json.dumps(rows)
    # not consumed: every message is still there, visible
    assert env.visible(env.dlq_url) == mixed["total"]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("customer", {"acme": 5, "beta": 2, "(unparsed)": 1}),
        ("source", {"api": 4, "cron": 2, "(none)": 1, "(unparsed)": 1}),
        ("job_status", {"completed": 4, "failed": 2, "(unknown)": 1, "(no job)": 1}),
        ("age", {"<5m": 8}),
    ],
)
def test_by_each_key(env, mixed, by, expected):
    assert counts(stats("--by", by)) == expected
    assert env.visible(env.dlq_url) == mixed["total"]


def test_job_status_over_supabase(env, mixed, supabase_env):
    assert counts(stats("--by", "job_status")) == {
        "completed": 4,
        "failed": 2,
        "(unknown)": 1,
        "(no job)": 1,
    }


def test_job_status_without_a_database_is_a_config_error(env, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    result = invoke(["dlq", "stats", "--by", "job_status"], code=3)
    assert "database" in one_line_error(result.stderr)
    # other keys need no database
    send(env.client, env.dlq_url, ['{"_dlq_reason": "x"}'])
    assert counts(stats("--by", "reason")) == {"x": 1}


def test_non_consuming_receive_count_goes_up_by_one(env, mixed):
    before = receive_counts(env)
    assert len(before) == mixed["total"]
    stats("--by", "customer")
    after = receive_counts(env)
    assert set(after) == set(before)
    assert all(after[m] == before[m] + 2 for m in before)  # the stats scan + this peek


def test_filters_and_top(env, mixed):
    assert counts(stats("--customer", "acme")) == {"timeout after <n>s": 4, "(no reason)": 1}
    assert counts(stats("--reason", "bob@")) == {"user <email> not found": 2}
    assert counts(stats("--match", "source=cron", "--by", "source")) == {"cron": 2}
    assert counts(stats("--job-id", mixed["done"], "--by", "job_status")) == {"completed": 4}
    assert stats("--older-than", "1h") == []
    assert sum(counts(stats("--newer-than", "1h")).values()) == mixed["total"]
    top = stats("--top", "1")
    assert counts(top) == {"timeout after <n>s": 4}
    assert counts(stats("--max", "3", "--by", "age")) == {"<5m": 3}
    assert env.visible(env.dlq_url) == mixed["total"]


def test_output_formats_and_histogram(env, mixed):
    table = invoke(["dlq", "stats", "--by", "age"]).stdout
    assert "histogram" in table and "█" in table and "<5m" in table
    plain = invoke(["dlq", "stats"]).stdout
    assert "timeout after <n>s" in plain and "histogram" not in plain
    csv = invoke(["dlq", "stats", "--by", "customer", "-o", "csv"]).stdout.splitlines()
    assert csv[0] == "key,count,oldest_age_seconds,newest_age_seconds,sample_message_id"
    assert "█" not in "".join(csv)
    lines = invoke(["dlq", "stats", "-o", "jsonl"]).jsonl
    assert counts(lines) == counts(stats())
    md = invoke(["dlq", "stats", "-o", "md"]).stdout
    assert md.startswith("| key")


def test_empty_queue(env):
    assert stats() == []
    assert "no messages" in invoke(["dlq", "stats"]).stderr


def test_every_odd_message_is_counted(env):
    ids = dict(zip(NAMES, put_odd_messages(env.client, env.dlq_url), strict=True))
    for by in ("reason", "customer", "job_status", "age", "source"):
        rows = stats("--by", by)
        assert sum(r["count"] for r in rows) == len(ODD), by
        assert {r["sample_message_id"] for r in rows} <= set(ids.values())
        invoke(["dlq", "stats", "--by", by])  # the table view too
    reasons = counts(stats())
    # not JSON objects: text, array, string, number, null, deep, big, control, typed attrs
    assert reasons["(unparsed)"] == 9
    assert reasons["binary attribute"] == 1 and reasons["<n>"] == 1  # _dlq_reason 7
    assert "ünï@example.com" not in json.dumps(reasons)
    customers = counts(stats("--by", "customer"))
    assert "jane@example.com" not in json.dumps(customers)
    assert env.visible(env.dlq_url) == len(ODD)


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--by", "colour"], 2, "colour"),
        (["--top", "0"], 2, "--top"),
        (["--top", "-3"], 2, "--top"),
        (["--max", "0"], 2, "--max"),
        (["--older-than", "10x"], 2, "--older-than"),
        (["--match", "foo"], 2, "--match"),
        (["--lease", "1s"], 2, "--lease"),
        (["--queue", ""], 2, "--queue"),
        (["--queue", "no-such-queue"], 4, "no-such-queue"),
    ],
)
def test_bad_input(env, args, code, text):
    send(env.client, env.dlq_url, ['{"_dlq_reason": "x"}'])
    result = invoke(["dlq", "stats", *args], code=code)
    assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert env.visible(env.dlq_url) == 1


# --------------------------------------------------------------------------- chart helpers
