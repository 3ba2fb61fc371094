"""Identifiers and endpoints are data, never SQL: stored and matched literally (hypothesis)."""

from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from dbops.adapters.postgres import PostgresStore
from dbops.services import ratelimit as rl

FRAGMENTS = [
    "'",
    "''",
    '"',
    ";",
    "--",
    "/*",
    "*/",
    "\\",
    "%",
    "_",
    "$$",
    "$1",
    "%s",
    "%(x)s",
    "'; drop table rate_limit_requests; --",
    "' or '1'='1",
    '" or 1=1 --',
    "); delete from dbops_rate_limit_rules; --",
    "\u00e9",
    "\u6f22\u5b57",
    "\U0001f600",
    "\u202e",
    "\n",
    "\t",
    " ",
    "api_key:",
    "ip:1.2.3.4",
    "\u0001",
]
TEXT = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            min_size=1,
            max_size=12,
        ),
    ),
    min_size=1,
    max_size=6,
).map("".join)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(key_a=TEXT, key_b=TEXT, endpoint=TEXT)
def test_hostile_identifiers_and_endpoints_are_literal(database_url, key_a, key_b, endpoint):
    if key_a == key_b:
        key_b = key_a + "'"
    a, b = f"api_key:{key_a}", f"api_key:{key_b}"
    other_endpoint = endpoint + "%"  # a LIKE wildcard in the data must not widen the match
    store = PostgresStore(database_url)
    try:
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
            db.execute("delete from rate_limit_requests")
            db.execute("delete from dbops_rate_limit_denials")

            first = rl.hit(store=store, identifier=a, endpoint=endpoint)
            second = rl.hit(store=store, identifier=a, endpoint=endpoint)
            assert first.allowed and second.allowed
            limit = first.limit
            assert limit is not None
            assert (first.remaining, second.remaining) == (limit - 1, limit - 2)
            # Hits for one identifier or endpoint never count for another.
            assert rl.hit(store=store, identifier=b, endpoint=endpoint).remaining == limit - 1
            other = rl.hit(store=store, identifier=a, endpoint=other_endpoint)
            assert other.remaining == (other.limit or 0) - 1

            stored = db.execute(
                "select identifier, endpoint from rate_limit_requests order by id"
            ).fetchall()
            assert [(r["identifier"], r["endpoint"]) for r in stored] == [
                (a, endpoint),
                (a, endpoint),
                (b, endpoint),
                (a, other_endpoint),
            ]
            [status] = rl.status(store=store, identifier=a, endpoint=endpoint)
            assert status.used == 2 and status.endpoint == endpoint

            rl.block(
                store=store,
                identifier=a,
                endpoint=endpoint,
                for_seconds=60,
                reason="r" + key_b,
                actor="t",
            )
            assert rl.hit(store=store, identifier=a, endpoint=endpoint).blocked
            assert not rl.hit(store=store, identifier=b, endpoint=endpoint).blocked
            assert not rl.hit(store=store, identifier=a, endpoint=other_endpoint).blocked
            rl.unblock(store=store, identifier=a, endpoint=None, actor="t")

            plan = rl.reset_preview(store=store, identifier=a, endpoint=endpoint)
            assert plan.requests == 2
            rl.reset(store=store, identifier=a, plan=plan)
            left = db.execute("select count(*) as n from rate_limit_requests").fetchone()["n"]
            assert left == 4  # b's two hits and a's two on the other endpoint survive

            tables = db.execute("select count(*) as n from dbops_rate_limit_rules").fetchone()["n"]
            assert tables == 4
    finally:
        store.close()
