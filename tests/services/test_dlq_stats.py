"""dbops.services.dlq.stats: reason normalisation (unit + properties), keys, grouping, and the
job-status lookup over both transports and both app schema variants."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.errors import ConfigError, UsageError
from dbops.ports import QueueMessage
from dbops.services.dlq import stats
from dbops.services.messages import MessageFilter, parse
from dbops.services.redact import mask_text


def message(
    body: str,
    *,
    age: float | None = 10.0,
    attrs: dict[str, Any] | None = None,
    system: dict[str, str] | None = None,
    message_id: str | None = None,
) -> Any:
    now = time.time()
    system = dict(system or {})
    if age is not None:
        system["SentTimestamp"] = str(int((now - age) * 1000))
    raw = QueueMessage(
        message_id=message_id or str(uuid.uuid4()),
        receipt_handle="rh",
        body=body,
        attributes=system,
        message_attributes=attrs or {},
    )
    return parse(raw, now=now)


# --------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("timeout after 30s", "timeout after 31s", "timeout after <n>s"),
        ("retry 1.5 of 3", "retry 2.25 of 10", "retry <n> of <n>"),
        (
            "job 123e4567-e89b-12d3-a456-426614174000 failed",
            "job 9b2d3f4a-0000-4c1e-8f00-1234567890ab failed",
            "job <uuid> failed",
        ),
        ("missing 4443bbfa", "missing deadbeef1", "missing <hex>"),
        ("no customer cus_N3x7Kq9ZabC", "no customer cus_Zz9yXw8VuT", "no customer cus_<id>"),
        (
            "mail to bob@corp.io bounced",
            "mail to ünï@example.com bounced",
            "mail to <email> bounced",
        ),
        (
            "GET https://api.example.com/v1/jobs/42?x=1 -> 503",
            "GET http://10.0.0.1:8080/health -> 503",
            "GET <url> -> <n>",
        ),
        ("see www.example.com/status", "see WWW.other.org", "see <url>"),
        ("  spaces\tand\nlines ", "spaces and lines", "spaces and lines"),
        ("db error (code=23505)", "db error (code=40001)", "db error (code=<n>)"),
    ],
)
def test_reasons_that_differ_only_in_values_group_together(a: str, b: str, expected: str):
    assert stats.normalise_reason(a) == stats.normalise_reason(b) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [("timeout", "Timeout"), ("timeout after <n>s", "oom"), ("deadbeef", "cafebabe")],
)
def test_different_words_stay_apart(a: str, b: str):
    # words (even hex-looking ones without a digit) are kept: they are the reason's text
    assert stats.normalise_reason(a) != stats.normalise_reason(b)
    assert stats.normalise_reason("deadbeef") == "deadbeef"


def test_long_reasons_are_cut_and_words_kept():
    long = "x" * 10_000
    assert len(stats.normalise_reason(long)) == stats.KEY_MAX
    assert stats.normalise_reason(long).endswith("…")
    assert stats.normalise_reason("") == ""


@given(st.text())
@settings(max_examples=400, deadline=None)
def test_normalisation_is_idempotent_on_any_text(text: str):
    once = stats.normalise_reason(text)
    assert stats.normalise_reason(once) == once
    assert len(once) <= stats.KEY_MAX
    assert not any(c.isascii() and c.isdigit() for c in once)


_ALPHABET = st.sampled_from([*"aZ09f-_.@:/+%<> \t\n=()…w", "://", "www.", "@x.io"])


@given(st.lists(_ALPHABET, max_size=80).map("".join))
@settings(max_examples=400, deadline=None)
def test_normalisation_is_idempotent_on_id_like_text(text: str):
    once = stats.normalise_reason(text)
    assert stats.normalise_reason(once) == once


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 1_000_000,
        "a1" * 500_000,
        "@" * 1_000_000,
        "a@" * 500_000,
        "0-" * 500_000,
        "1." * 500_000,
        "ffffffff-ffff-ffff-ffff-fffffffffff" * 30_000 + "1",
    ],
    ids=["letters", "alnum", "ats", "email-ish", "digits-dashes", "dotted", "near-uuids"],
)
def test_normalisation_is_linear_on_one_huge_token(hostile: str):
    # one whole token (normalise_reason itself reads only the first 2,000 characters): the
    # token rules must not go quadratic; 1 MiB is processed in well under a second
    # (a backtracking pattern takes minutes)
    started = time.perf_counter()
    out = stats._token(hostile)
    assert time.perf_counter() - started < 5
    assert not any(c.isdigit() for c in out)


# --------------------------------------------------------------------------- keys
def test_reason_keys():
    assert stats.reason_key(message('{"_dlq_reason": "timeout after 3s"}')) == (
        "timeout after <n>s"
    )
    assert stats.reason_key(message('{"job_id": "x"}')) == stats.NO_REASON
    assert stats.reason_key(message("timeout after 3s (not JSON)")) == stats.UNPARSED
    assert stats.reason_key(message("[1, 2]")) == stats.UNPARSED
    assert stats.reason_key(message('{"_dlq_reason": 7}')) == "<n>"
    assert stats.reason_key(message('{"_dlq_reason": " "}')) == "(empty)"


def test_customer_keys_masked_unless_revealed():
    assert stats.customer_key(message('{"customer_id": "acme"}')) == "acme"
    assert stats.customer_key(message('{"job_id": "x"}')) == stats.NONE
    assert stats.customer_key(message("raw")) == stats.UNPARSED
    by_attr = message("raw", attrs={"customer_id": {"DataType": "String", "StringValue": "beta"}})
    assert stats.customer_key(by_attr) == "beta"
    email = message('{"customer_id": "jane@example.com"}')
    assert "jane@example.com" not in stats.customer_key(email)
    assert stats.customer_key(email) == mask_text("jane@example.com")
    assert stats.customer_key(email, reveal=True) == "jane@example.com"
    assert stats.customer_key(message(json.dumps({"customer_id": ["a", "b"]}))) == '["a","b"]'
    assert len(stats.customer_key(message(json.dumps({"customer_id": "c" * 5000})))) == 200


def test_source_keys():
    assert stats.source_key(message('{"source": "api"}')) == "api"
    assert stats.source_key(message('{"source": 3}')) == "3"
    attr = {"source": {"DataType": "String", "StringValue": "webhook"}}
    assert stats.source_key(message('{"job_id": "x"}', attrs=attr)) == "webhook"
    assert stats.source_key(message("raw", attrs=attr)) == "webhook"
    arn = {"DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:000000000000:jobs"}
    assert stats.source_key(message('{"job_id": "x"}', system=arn)) == "queue:jobs"
    assert stats.source_key(message('{"job_id": "x"}')) == stats.NONE
    assert stats.source_key(message("raw")) == stats.UNPARSED


@pytest.mark.parametrize(
    ("age", "bucket"),
    [
        (0, "<5m"),
        (299.9, "<5m"),
        (300, "5m-1h"),
        (3599, "5m-1h"),
        (3600, "1h-6h"),
        (6 * 3600, "6h-1d"),
        (86400, "1d-3d"),
        (3 * 86400, "3d-7d"),
        (7 * 86400, "7d+"),
        (14 * 86400, "7d+"),
        (None, stats.UNKNOWN),
    ],
)
def test_age_buckets(age, bucket):
    assert stats.age_bucket(age) == bucket


def test_groups_keep_count_ages_and_the_oldest_as_sample():
    grouper = stats._Grouper("reason", store=None, reveal=False)
    old = message('{"_dlq_reason": "timeout after 30s"}', age=500, message_id="old")
    new = message('{"_dlq_reason": "timeout after 31s"}', age=5, message_id="new")
    undated = message('{"_dlq_reason": "timeout after 9s"}', age=None, message_id="undated")
    for m in (new, undated, old):
        grouper.add(m)
    (key, group), *_ = grouper.groups.items()
    row = group.row(key)
    assert (row.key, row.count, row.sample_message_id) == ("timeout after <n>s", 3, "old")
    assert row.oldest_age_seconds is not None and 499 < row.oldest_age_seconds < 502
    assert row.newest_age_seconds is not None and 4 < row.newest_age_seconds < 7


def test_rank_top_and_age_order():
    rows = [
        stats.DlqStatsRow(key=k, count=c, sample_message_id=k)
        for k, c in [("7d+", 5), ("<5m", 1), ("1h-6h", 3), ("5m-1h", 3)]
    ]
    assert [r.key for r in stats.rank(rows, by="reason", top=None)] == [
        "7d+",
        "1h-6h",
        "5m-1h",
        "<5m",
    ]
    assert [r.key for r in stats.rank(rows, by="age", top=None)] == [
        "<5m",
        "5m-1h",
        "1h-6h",
        "7d+",
    ]
    assert [r.key for r in stats.rank(rows, by="age", top=2)] == ["1h-6h", "7d+"]


# --------------------------------------------------------------------------- service
def _send(client: Any, url: str, bodies: list[str]) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
        ]
        ok = client.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]
        ids.extend(e["MessageId"] for e in ok)
    return ids


def test_bad_arguments_are_refused_before_any_receive(queues, sqs_endpoint):
    sqs = SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)
    _send(queues.client, queues.dlq_url, ['{"_dlq_reason": "x"}'])
    base = {"queues": sqs, "queue_url": queues.dlq_url}
    with pytest.raises(UsageError, match="--by"):
        stats.group_messages(by="colour", **base)
    with pytest.raises(UsageError, match="--top"):
        stats.group_messages(by="reason", top=0, **base)
    with pytest.raises(UsageError, match="--lease"):
        stats.group_messages(by="reason", lease=1, **base)
    with pytest.raises(ConfigError, match="database"):
        stats.group_messages(by="job_status", store=None, **base)
    # nothing was received: the message is visible and was never received
    attrs = queues.client.receive_message(
        QueueUrl=queues.dlq_url, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"][0]["Attributes"]
    assert attrs["ApproximateReceiveCount"] == "1"


def test_job_status_over_both_transports(store, job_seed, queues, sqs_endpoint):
    done = job_seed.job(status="completed")
    failed = job_seed.job(status="failed")
    ghost = str(uuid.uuid4())
    bodies = (
        [json.dumps({"job_id": done})] * 3
        + [json.dumps({"job_id": done.upper()})]  # the same job, in capitals: its own id
        + [json.dumps({"job_id": failed})] * 2
        + [json.dumps({"job_id": ghost}), json.dumps({"job_id": "not-a-uuid"})]
        + [json.dumps({"job_id": "j" * 500})]
        + ['{"customer_id": "acme"}', "not json at all"]
    )
    _send(queues.client, queues.dlq_url, bodies)
    sqs = SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)
    result = stats.group_messages(
        queues=sqs, queue_url=queues.dlq_url, by="job_status", store=store
    )
    counts = {r.key: r.count for r in result.rows}
    assert counts == {"completed": 4, "failed": 2, "(unknown)": 3, "(no job)": 2}
    assert result.lookups == 1 and result.matched == result.scanned == len(bodies)
    assert queues.visible(queues.dlq_url) == len(bodies)


def test_job_status_batches_round_trips(database_url, job_seed, queues, sqs_endpoint, monkeypatch):
    monkeypatch.setattr(stats, "LOOKUP_BATCH", 7)
    ids = job_seed.many(20, status="completed")
    _send(queues.client, queues.dlq_url, [json.dumps({"job_id": j}) for j in ids])
    sqs = SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)
    pg = PostgresStore(database_url)
    try:
        result = stats.group_messages(
            queues=sqs, queue_url=queues.dlq_url, by="job_status", store=pg
        )
    finally:
        pg.close()
    assert [(r.key, r.count) for r in result.rows] == [("completed", 20)]
    assert result.lookups == 3  # 7 + 7 + 6 distinct ids: one round trip each


def test_job_status_sql_on_both_schema_variants(variant_db, variant_database_url, schema_variant):
    customer = str(uuid.uuid4())
    legacy_done = "complete" if schema_variant == "legacy" else "completed"
    done = variant_db.execute(
        "insert into jobs (customer_id, status) values (%s, %s) returning id::text as id",
        [customer, legacy_done],
    ).fetchone()["id"]
    pending = variant_db.execute(
        "insert into jobs (customer_id, status) values (%s, 'pending') returning id::text as id",
        [customer],
    ).fetchone()["id"]
    pg = PostgresStore(variant_database_url)
    try:
        given_ids = [done, f" {pending} ", "nope", str(uuid.uuid4()), ""]
        rows = pg.call(
            "dbops_dlq_stats_job_status",
            {"p_job_ids": "{" + ",".join(f'"{i}"' for i in given_ids) + "}"},
        )
    finally:
        pg.close()
    got = {r["job_id"]: r["status"] for r in rows}
    assert got[done] == "completed"
    assert got[pending] == "pending"
    assert got["nope"] is None
    assert len(got) == 4  # every non-empty id comes back once, trimmed


def test_filters_and_top(queues, sqs_endpoint):
    bodies = (
        [
            json.dumps({"customer_id": "acme", "_dlq_reason": f"timeout after {i}s"})
            for i in range(5)
        ]
        + [json.dumps({"customer_id": "beta", "_dlq_reason": "oom killed"})] * 3
        + [json.dumps({"customer_id": "acme", "_dlq_reason": "bad payload"})]
    )
    _send(queues.client, queues.dlq_url, bodies)
    sqs = SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)
    base = {"queues": sqs, "queue_url": queues.dlq_url}
    only_acme = stats.group_messages(
        by="reason", message_filter=MessageFilter(customers=["acme"]), **base
    )
    assert [(r.key, r.count) for r in only_acme.rows] == [
        ("timeout after <n>s", 5),
        ("bad payload", 1),
    ]
    assert (only_acme.scanned, only_acme.matched) == (9, 6)
    top = stats.group_messages(by="reason", top=2, **base)
    assert [(r.key, r.count) for r in top.rows] == [("timeout after <n>s", 5), ("oom killed", 3)]
    assert (top.groups, top.omitted) == (3, 1)
    assert queues.visible(queues.dlq_url) == len(bodies)


def test_concurrent_scan_counts_each_message_once_with_odd_bodies(queues, sqs_endpoint):
    """A few hundred messages, so that `group_messages` receives with several threads: every
    message is counted exactly once (odd bodies under `(unparsed)`), even one that two
    concurrent receives both got (moto does that now and then, SQS may too), and all of
    them are visible again afterwards."""
    assert stats.RECEIVERS > 1
    reasons = [f"timeout after {i}s" for i in range(200)]
    bodies = [json.dumps({"_dlq_reason": r}) for r in reasons]
    bodies += ["not json at all", "[1, 2]", "{broken", '"just a string"'] * 20
    bodies += [json.dumps({"job_id": "j"})] * 20
    _send(queues.client, queues.dlq_url, bodies)
    sqs = SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)
    result = stats.group_messages(queues=sqs, queue_url=queues.dlq_url, by="reason")
    assert {(r.key, r.count) for r in result.rows} == {
        ("timeout after <n>s", 200),
        (stats.UNPARSED, 80),
        (stats.NO_REASON, 20),
    }
    assert (result.scanned, result.matched) == (300, 300)
    assert result.released >= 300  # a message received twice is released under both handles
    assert result.drained is True and result.warnings == []
    assert queues.visible(queues.dlq_url) == 300
    assert len(queues.drain(queues.dlq_url)) == 300
