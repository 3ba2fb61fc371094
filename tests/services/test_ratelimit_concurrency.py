"""The atomic check under real concurrency: separate connections from many threads."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row


def hammer(database_url: str, calls: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One thread and one connection per call, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[dict[str, Any] | BaseException] = [RuntimeError("no result")] * len(calls)

    def worker(i: int, identifier: str, endpoint: str) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
                barrier.wait(timeout=60)
                results[i] = conn.execute(
                    "select * from dbops_rate_limit_hit(%s, %s)", (identifier, endpoint)
                ).fetchone()
        except BaseException as exc:
            barrier.abort()
            results[i] = exc

    threads = [
        threading.Thread(target=worker, args=(i, ident, ep)) for i, (ident, ep) in enumerate(calls)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    return results  # type: ignore[return-value]


def test_150_concurrent_hits_on_a_100_per_minute_rule_allow_exactly_100(database_url, db):
    results = hammer(database_url, [("ip:203.0.113.7", "/api/jobs")] * 150)
    allowed = [r for r in results if r["allowed"]]
    denied = [r for r in results if not r["allowed"]]
    assert len(allowed) == 100
    assert len(denied) == 50
    assert all(r["limit"] == 100 and r["rule_name"] == "public" for r in results)
    assert sorted(r["remaining"] for r in allowed) == list(range(100))
    assert all(r["retry_after_seconds"] >= 1 for r in denied)
    logged = db.execute("select count(*) as n from rate_limit_requests").fetchone()["n"]
    assert logged == 100
    counted = db.execute("select sum(denied) as n from dbops_rate_limit_denials").fetchone()["n"]
    assert counted == 50


def test_concurrent_identifiers_do_not_share_a_window(database_url, db):
    calls = [("ip:198.51.100.1", "/api/auth/login")] * 20 + [
        ("api_key:k-2", "/api/auth/login")
    ] * 20
    results = hammer(database_url, calls)
    first = [r["allowed"] for r in results[:20]]
    second = [r["allowed"] for r in results[20:]]
    assert first.count(True) == 5 and second.count(True) == 5
