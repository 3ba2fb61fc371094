"""dbops.services.ids: short-id parsing (properties), the choice rule, and the SQL resolver
(`dbops_resolve_ids`) over both transports and both application schema variants."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbops.adapters.postgres import PostgresStore
from dbops.errors import NotFoundError, UsageError
from dbops.services import ids

HEX = "0123456789abcdef"


# --------------------------------------------------------------------------- parsing
@given(st.uuids())
def test_every_uuid_form_is_a_whole_id(value: uuid.UUID) -> None:
    for text in (str(value), str(value).upper(), value.hex, f"  {value}  "):
        ref = ids.parse_id(text)
        assert ref.form == "uuid" and ref.full and ref.value == str(value)
        assert ref.matches(str(value)) and ref.matches(value.hex.upper())


@given(st.uuids(), st.integers(min_value=ids.MIN_PREFIX, max_value=31), st.booleans())
def test_every_prefix_of_a_uuid_parses_and_matches_it(
    value: uuid.UUID, digits: int, hyphens: bool
) -> None:
    text = str(value) if hyphens else value.hex
    # cut after `digits` hex digits (hyphens included where the canonical form has them)
    cut, seen = 0, 0
    while seen < digits:
        seen += text[cut] != "-"
        cut += 1
    ref = ids.parse_id(text[:cut].upper())
    assert ref.form == "prefix" and not ref.full
    assert ref.value == value.hex[:digits]
    assert ref.matches(str(value)) and ref.matches(value.hex)


@given(st.text(alphabet=HEX, min_size=1, max_size=ids.MIN_PREFIX - 1))
def test_a_hex_prefix_shorter_than_six_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="at least 6 hex characters"):
        ids.parse_id(text, label="job id")
    # also where other id formats are allowed (DLQ message ids)
    with pytest.raises(UsageError, match="at least 6 hex characters"):
        ids.parse_id(text, other_whole=True)


@given(st.text(min_size=0, max_size=60))
def test_any_text_parses_or_is_a_one_line_usage_error(text: str) -> None:
    try:
        ref = ids.parse_id(text, label="job id")
    except UsageError as exc:
        assert "\n" not in exc.one_line() and "job id" in exc.one_line()
        return
    digits = ref.value.replace("-", "")
    assert len(digits) >= ids.MIN_PREFIX and set(digits) <= set(HEX)


@pytest.mark.parametrize(
    "text",
    ["not-a-uuid", "zzzzzzzz", "4443bbfa-0b7d-4c1e-9a51-1d2e3f405060ff", "4443-bbfa", "", "  "],
)
def test_malformed_ids_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="not a UUID"):
        ids.parse_id(text, label="job id")


def test_other_formats_are_whole_ids_only_where_allowed() -> None:
    ref = ids.parse_id("msg-0001", other_whole=True)
    assert ref.form == "other" and ref.full
    assert ref.matches("msg-0001") and not ref.matches("msg-00010")
    with pytest.raises(UsageError):
        ids.parse_id("msg-0001")


def test_parse_ids_deduplicates_in_order_and_needs_one() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    refs = ids.parse_ids([a, b[:8], a.upper(), b[:8]], label="job id")
    assert [r.value for r in refs] == [a, b[:8]]
    with pytest.raises(UsageError, match="give at least one job id"):
        ids.parse_ids([], label="job id")


# --------------------------------------------------------------------------- choosing
def test_choose_one_none_or_several() -> None:
    ref = ids.parse_id("abcdef")
    assert ids.choose(ref, ["abcdef01-0000-0000-0000-000000000000"]) == (
        "abcdef01-0000-0000-0000-000000000000"
    )
    with pytest.raises(NotFoundError, match="no job id starts with 'abcdef'"):
        ids.choose(ref, [], label="job id")
    many = [f"abcdef0{i}-0000-0000-0000-000000000000" for i in range(7)]
    with pytest.raises(UsageError) as caught:
        ids.choose(ref, many, label="job id")
    line = caught.value.one_line()
    assert "ambiguous" in line and "and more" in line and "\n" not in line
    assert sum(m in line for m in many) == ids.MAX_CANDIDATES


# --------------------------------------------------------------------------- SQL resolver
def _ids_sharing(prefix: str, n: int) -> list[str]:
    """n uuids that all start with `prefix` (hex digits)."""
    return [str(uuid.UUID(prefix + uuid.uuid4().hex[len(prefix) :])) for _ in range(n)]


def _insert_jobs(conn: Any, job_ids: list[str]) -> None:
    for job_id in job_ids:
        # customer_id is text in the standard schema and uuid in the legacy one
        conn.execute(
            "insert into jobs (id, customer_id, status) values (%s, %s, 'pending')",
            [job_id, str(uuid.uuid4())],
        )


def test_resolve_ids_over_both_transports(store: Any, db: Any) -> None:
    shared = _ids_sharing("abc123", 2)
    lone = _ids_sharing("fed987", 1)
    _insert_jobs(db, shared + lone)
    worker = str(db.execute("select gen_random_uuid() as id").fetchone()["id"])
    db.execute(
        "insert into worker_heartbeats (worker_id, queue_name, status, last_heartbeat) "
        "values (%s, 'jobs', 'idle', now())",
        [worker],
    )

    # a whole list of prefixes, one call; whole UUIDs are passed through untouched
    assert ids.resolve_ids(store=store, kind="job", values=[lone[0][:6], shared[0]]) == [
        lone[0],
        shared[0],
    ]
    assert ids.resolve_ids(store=store, kind="worker", values=[worker[:8]]) == [worker]
    with pytest.raises(UsageError, match="ambiguous") as caught:
        ids.resolve_ids(store=store, kind="job", values=["abc123"])
    assert all(s in caught.value.one_line() for s in shared)
    with pytest.raises(NotFoundError, match="no job id starts with '000000'"):
        ids.resolve_ids(store=store, kind="job", values=[lone[0][:6], "000000"])
    # a job prefix never resolves to a worker, nor the other way round
    with pytest.raises(NotFoundError):
        ids.resolve_ids(store=store, kind="job", values=[worker[:8]])

    rows = store.call(
        "dbops_resolve_ids", {"p_kind": "job", "p_prefixes": ["abc123", "fed987"], "p_limit": 1}
    )
    assert [(r["prefix"], r["id"]) for r in rows] == [
        ("abc123", min(shared)),
        ("fed987", lone[0]),
    ]


@pytest.mark.parametrize(
    ("kind", "prefixes", "limit"),
    [
        ("audit", ["abcdef"], 6),
        (None, ["abcdef"], 6),
        ("job", ["abcde"], 6),
        ("job", ["ABCDEF"], 6),
        ("job", ["abc-def"], 6),
        ("job", [None], 6),
        ("job", ["abcdef"], 0),
    ],
)
def test_resolve_ids_sql_refuses_bad_input(
    database_url: str, kind: Any, prefixes: Any, limit: int
) -> None:
    store = PostgresStore(database_url)
    try:
        with pytest.raises(UsageError):
            store.call(
                "dbops_resolve_ids", {"p_kind": kind, "p_prefixes": prefixes, "p_limit": limit}
            )
    finally:
        store.close()


def test_resolve_ids_on_both_schema_variants(
    schema_variant: str, variant_db: Any, variant_database_url: str
) -> None:
    url = variant_database_url
    shared = _ids_sharing("0a0b0c", 3)
    _insert_jobs(variant_db, shared)
    store = PostgresStore(url)
    try:
        assert ids.resolve_ids(store=store, kind="job", values=[shared[1][:12]]) == [shared[1]]
        with pytest.raises(UsageError, match="ambiguous"):
            ids.resolve_ids(store=store, kind="job", values=["0a0b0c"])
    finally:
        store.close()
