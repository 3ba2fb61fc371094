"""Identifiers and endpoints are data, never SQL: stored and matched literally (hypothesis)."""

from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, assume, given, settings
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
        # Endpoints are normalised first (case, slashes, query, fragment: one SQL rule);
        # after that they are data, matched literally.
        endpoint_n = rl.normalize_endpoint(store=store, endpoint=endpoint)
        other_n = rl.normalize_endpoint(store=store, endpoint=other_endpoint)
        assume(endpoint_n != other_n)  # e.g. not when the `%` lands after a `?`
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
                (a, endpoint_n),
                (a, endpoint_n),
                (b, endpoint_n),
                (a, other_n),
            ]
            [status] = rl.status(store=store, identifier=a, endpoint=endpoint)
            assert status.used == 2 and status.endpoint == endpoint_n

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


# Path segments as routes carry them (printable ASCII: lower() outside ASCII depends on the
# database's locale); queries and fragments may hold anything but NUL.
SEGMENT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/?#"),
    min_size=1,
    max_size=8,
)
TAIL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    segments=st.lists(SEGMENT, min_size=1, max_size=4),
    slashes=st.lists(st.integers(1, 3), min_size=5, max_size=5),
    upper=st.booleans(),
    trailing=st.integers(0, 2),
    query=st.one_of(st.none(), TAIL),
    fragment=st.one_of(st.none(), TAIL),
)
def test_spellings_of_one_path_normalise_to_one_endpoint(
    db, segments, slashes, upper, trailing, query, fragment
):
    """Case, repeated and trailing slashes, a query string and a fragment never change the
    endpoint a request is counted under; the result is canonical (normalising is idempotent)."""
    canonical = "/" + "/".join(s.lower() for s in segments)
    sent = "".join(
        "/" * n + (s.upper() if upper else s) for n, s in zip(slashes, segments, strict=False)
    )
    sent += "/" * trailing
    if query is not None:
        sent += "?" + query
    if fragment is not None:
        sent += "#" + fragment

    def norm(text: str) -> str:
        row = db.execute("select dbops_rate_limit_normalize_endpoint(%s) as e", [text])
        return row.fetchone()["e"]

    got = norm(sent)
    assert got == canonical, (sent, got)
    assert norm(got) == got
    assert got.startswith("/") and "//" not in got and "?" not in got and "#" not in got
