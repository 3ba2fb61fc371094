"""Rate limiting: the SQL functions through the service, on both transports (`store`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dbops.errors import NotFoundError, UsageError
from dbops.services import ratelimit as rl
from tests.helpers import retry_after_bounds

KEY = "api_key:sk_live_0123456789abcdef"
IP = "ip:203.0.113.7"


def hits(store, identifier, endpoint, n):
    return [rl.hit(store=store, identifier=identifier, endpoint=endpoint) for _ in range(n)]


def rows(db, identifier=None):
    if identifier is None:
        return db.execute("select count(*) as n from rate_limit_requests").fetchone()["n"]
    return db.execute(
        "select count(*) as n from rate_limit_requests where identifier = %s", (identifier,)
    ).fetchone()["n"]


# --------------------------------------------------------------------------- rules
def test_presets_are_seeded_in_matching_order(store):
    rules = rl.list_rules(store=store)
    by_name = {r.name: r for r in rules}
    assert {n: (r.limit, r.window_seconds) for n, r in by_name.items()} == {
        "auth": (5, 900),
        "staff": (30, 60),
        "public": (100, 60),
        "admin": (10, 60),
    }
    assert rules[-1].name == "public"  # the catch-all is matched last
    assert all(r.enabled and r.override_expires_at is None for r in rules)


@pytest.mark.parametrize(
    ("endpoint", "rule"),
    [
        ("/api/auth/login", "auth"),
        ("/api/staff/jobs", "staff"),
        ("/api/admin/users/1", "admin"),
        ("/api/authx", "public"),
        ("/api/jobs", "public"),
        ("no-leading-slash", "public"),
    ],
)
def test_most_specific_rule_matches(db, database_url, endpoint, rule):
    from dbops.adapters.postgres import PostgresStore

    store = PostgresStore(database_url)
    try:
        assert rl.hit(store=store, identifier=IP, endpoint=endpoint).rule_name == rule
    finally:
        store.close()


def test_identifier_kind_narrows_a_rule(store, db):
    db.execute("update dbops_rate_limit_rules set identifier_kind = 'ip' where name = 'staff'")
    assert rl.hit(store=store, identifier=IP, endpoint="/api/staff/x").rule_name == "staff"
    assert rl.hit(store=store, identifier=KEY, endpoint="/api/staff/x").rule_name == "public"


def test_unknown_rule_is_not_found(store):
    with pytest.raises(NotFoundError):
        rl.get_rule(store=store, name="nope")
    with pytest.raises(NotFoundError):
        rl.set_rule(
            store=store,
            name="nope",
            limit=1,
            window_seconds=60,
            for_seconds=None,
            reason=None,
            actor="t",
        )
    with pytest.raises(NotFoundError):
        rl.set_enabled(store=store, name="nope", enabled=False, actor="t")


# --------------------------------------------------------------------------- the check
def test_hit_allows_up_to_the_limit_then_denies(store, db):
    results = hits(store, IP, "/api/auth/login", 7)
    assert [r.allowed for r in results] == [True] * 5 + [False] * 2
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0, 0]
    assert all(r.limit == 5 and r.window_seconds == 900 for r in results)
    denied = results[-1]
    assert not denied.blocked
    # A slot frees when the first allowed request leaves the 15-minute window; Retry-After
    # counts down from 900 s by however long the seven hits took.
    first = db.execute("select min(created_at) as t from rate_limit_requests").fetchone()["t"]
    assert denied.reset_at == first + timedelta(seconds=900)
    low, high = retry_after_bounds(db, denied.reset_at, hit_after=first)
    assert high == 900 and low <= denied.retry_after_seconds <= high
    # Denied requests are not logged as requests; they are counted as denials.
    assert rows(db) == 5
    assert db.execute("select sum(denied) as n from dbops_rate_limit_denials").fetchone()["n"] == 2
    ratio = rl.ratio_429(store=store, since_seconds=900)
    assert (ratio.requests, ratio.allowed, ratio.denied) == (7, 5, 2)
    assert ratio.percent == pytest.approx(100 * 2 / 7)


def test_windows_are_per_identifier_and_endpoint(store):
    hits(store, IP, "/api/auth/login", 5)
    assert not rl.hit(store=store, identifier=IP, endpoint="/api/auth/login").allowed
    assert rl.hit(store=store, identifier=IP, endpoint="/api/auth/reset").allowed
    assert rl.hit(store=store, identifier="ip:203.0.113.8", endpoint="/api/auth/login").allowed


def test_sliding_window_and_retry_after(store, db):
    seeded = db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select %s, '/api/auth/login', now() - interval '10 minutes' from generate_series(1, 5) "
        "returning created_at, now() as seeded_at",
        (IP,),
    ).fetchall()
    ((oldest, seeded_at),) = {(r["created_at"], r["seeded_at"]) for r in seeded}
    denied = rl.hit(store=store, identifier=IP, endpoint="/api/auth/login")
    assert not denied.allowed
    # the oldest leaves the window in 5 min (from the seed; less by the time the hit took)
    assert denied.reset_at == oldest + timedelta(minutes=15)
    low, high = retry_after_bounds(db, denied.reset_at, hit_after=seeded_at)
    assert high == 300 and low <= denied.retry_after_seconds <= high
    db.execute("update rate_limit_requests set created_at = created_at - interval '6 minutes'")
    assert rl.hit(store=store, identifier=IP, endpoint="/api/auth/login").allowed


def test_lowered_limit_waits_for_enough_requests_to_age_out(store, db):
    seeded = db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select %s, '/api/auth/login', now() - make_interval(mins => g) "
        "from generate_series(1, 5) g returning created_at, now() as seeded_at",
        (IP,),
    ).fetchall()
    created = sorted(r["created_at"] for r in seeded)
    rl.set_rule(
        store=store,
        name="auth",
        limit=2,
        window_seconds=None,
        for_seconds=3600,
        reason="test",
        actor="t",
    )
    denied = rl.hit(store=store, identifier=IP, endpoint="/api/auth/login")
    # 5 used, limit 2: a slot frees when the 4th oldest (2 minutes old) leaves: in 13 min
    # (from the seed; less by the time the calls since took).
    assert not denied.allowed
    assert denied.reset_at == created[3] + timedelta(minutes=15)
    low, high = retry_after_bounds(db, denied.reset_at, hit_after=seeded[0]["seeded_at"])
    assert high == 780 and low <= denied.retry_after_seconds <= high


def test_rejects_malformed_identifiers_in_sql(store):
    for bad in ("user:1", "ip:", "api_key:", "203.0.113.7"):
        with pytest.raises(UsageError):
            rl.hit(store=store, identifier=bad, endpoint="/api/jobs")


# --------------------------------------------------------------------------- overrides
def test_override_applies_then_expires_without_a_job(store, db):
    rule = rl.set_rule(
        store=store,
        name="public",
        limit=2,
        window_seconds=None,
        for_seconds=3600,
        reason="launch",
        actor="alice",
    )
    assert (rule.limit, rule.window_seconds, rule.base_limit) == (2, 60, 100)
    assert rule.override_expires_at is not None and rule.override_reason == "launch"
    assert [h.allowed for h in hits(store, IP, "/api/jobs", 3)] == [True, True, False]

    db.execute("update dbops_rate_limit_overrides set expires_at = now() - interval '1 second'")
    rule = rl.get_rule(store=store, name="public")
    assert (rule.limit, rule.override_expires_at) == (100, None)
    after = rl.hit(store=store, identifier=IP, endpoint="/api/jobs")
    assert after.allowed and after.limit == 100 and after.remaining == 97


def test_permanent_set_replaces_base_and_ends_live_override(store):
    rl.set_rule(
        store=store,
        name="staff",
        limit=1,
        window_seconds=None,
        for_seconds=600,
        reason=None,
        actor="a",
    )
    rule = rl.set_rule(
        store=store,
        name="staff",
        limit=50,
        window_seconds=120,
        for_seconds=None,
        reason=None,
        actor="bob",
    )
    assert (rule.limit, rule.window_seconds, rule.override_expires_at) == (50, 120, None)
    assert rule.updated_by == "bob"
    assert rl.hit(store=store, identifier=IP, endpoint="/api/staff/x").limit == 50


def test_disabled_rule_does_not_limit_but_blocks_still_apply(store):
    rule = rl.set_enabled(store=store, name="auth", enabled=False, actor="t")
    assert not rule.enabled
    results = hits(store, IP, "/api/auth/login", 7)
    assert all(r.allowed and r.limit is None and r.rule_name == "auth" for r in results)
    rl.block(store=store, identifier=IP, endpoint=None, for_seconds=60, reason="r", actor="t")
    assert not rl.hit(store=store, identifier=IP, endpoint="/api/auth/login").allowed
    rl.set_enabled(store=store, name="auth", enabled=True, actor="t")
    rl.unblock(store=store, identifier=IP, endpoint=None, actor="t")
    assert not rl.hit(store=store, identifier=IP, endpoint="/api/auth/login").allowed  # 8 used


# --------------------------------------------------------------------------- blocks
def test_block_denies_with_retry_after_then_expires(store, db):
    result = rl.block(
        store=store, identifier=KEY, endpoint=None, for_seconds=3600, reason="abuse", actor="t"
    )
    assert result.identifier == "api_key:****cdef" and result.expires_at is not None
    denied = rl.hit(store=store, identifier=KEY, endpoint="/api/jobs")
    assert (denied.allowed, denied.blocked, denied.remaining) == (False, True, 0)
    # Retry-After counts down from the block's hour by the time since it was placed.
    assert denied.reset_at == result.expires_at
    placed = result.expires_at - timedelta(hours=1)
    low, high = retry_after_bounds(db, denied.reset_at, hit_after=placed)
    assert high == 3600 and low <= denied.retry_after_seconds <= high
    assert rows(db) == 0
    assert db.execute("select sum(blocked) as n from dbops_rate_limit_denials").fetchone()["n"] == 1

    db.execute("update dbops_rate_limit_blocks set expires_at = now() - interval '1 second'")
    assert rl.hit(store=store, identifier=KEY, endpoint="/api/jobs").allowed
    assert rl.active_blocks(store=store, identifier=KEY) == []


def test_endpoint_block_only_covers_that_endpoint(store):
    rl.block(
        store=store, identifier=IP, endpoint="/api/jobs", for_seconds=60, reason="r", actor="t"
    )
    assert rl.hit(store=store, identifier=IP, endpoint="/api/jobs").blocked
    assert rl.hit(store=store, identifier=IP, endpoint="/api/jobs/1").allowed


def test_block_again_replaces_and_unblock_lifts(store):
    rl.block(store=store, identifier=IP, endpoint=None, for_seconds=60, reason="a", actor="t")
    again = rl.block(
        store=store, identifier=IP, endpoint=None, for_seconds=7200, reason="b", actor="t"
    )
    assert len(again.replaces) == 1
    assert [b.reason for b in rl.active_blocks(store=store, identifier=IP)] == ["b"]
    lifted = rl.unblock(store=store, identifier=IP, endpoint=None, actor="t")
    assert lifted.lifted == 1
    assert rl.hit(store=store, identifier=IP, endpoint="/api/jobs").allowed
    with pytest.raises(NotFoundError):
        rl.unblock(store=store, identifier=IP, endpoint=None, actor="t")


# --------------------------------------------------------------------------- reset
def test_reset_makes_the_next_hit_allowed(store, db):
    hits(store, KEY, "/api/auth/login", 5)
    hits(store, IP, "/api/auth/login", 2)
    assert not rl.hit(store=store, identifier=KEY, endpoint="/api/auth/login").allowed
    plan = rl.reset_preview(store=store, identifier=KEY, endpoint=None)
    assert (plan.identifier, plan.requests, plan.endpoints) == ("api_key:****cdef", 5, 1)
    done = rl.reset(store=store, identifier=KEY, plan=plan, batch_size=2)
    assert (done.deleted, done.batches) == (5, 3)
    nxt = rl.hit(store=store, identifier=KEY, endpoint="/api/auth/login")
    assert nxt.allowed and nxt.remaining == 4
    assert rows(db, IP) == 2  # someone else's window is untouched


def test_reset_one_endpoint(store, db):
    hits(store, IP, "/api/auth/login", 2)
    hits(store, IP, "/api/jobs", 2)
    plan = rl.reset_preview(store=store, identifier=IP, endpoint="/api/jobs")
    assert plan.requests == 2
    rl.reset(store=store, identifier=IP, plan=plan)
    assert db.execute("select endpoint from rate_limit_requests group by endpoint").fetchall() == [
        {"endpoint": "/api/auth/login"}
    ]


# --------------------------------------------------------------------------- reading
def test_status_per_endpoint_masks_keys(store):
    hits(store, KEY, "/api/auth/login", 5)
    hits(store, KEY, "/api/jobs", 1)
    rl.block(
        store=store, identifier=KEY, endpoint="/api/staff/x", for_seconds=60, reason="r", actor="t"
    )
    got = {s.endpoint: s for s in rl.status(store=store, identifier=KEY, endpoint=None)}
    assert set(got) == {"/api/auth/login", "/api/jobs", "/api/staff/x"}
    assert all(s.identifier == "api_key:****cdef" for s in got.values())
    auth = got["/api/auth/login"]
    assert (auth.used, auth.remaining, auth.allowed, auth.rule) == (5, 0, False, "auth")
    assert auth.retry_after_seconds and auth.reset_at
    assert (got["/api/jobs"].used, got["/api/jobs"].remaining) == (1, 99)
    assert got["/api/staff/x"].blocked and got["/api/staff/x"].block_reason == "r"
    # Status is read-only.
    assert rl.hit(store=store, identifier=KEY, endpoint="/api/jobs").remaining == 98


def test_status_of_an_unknown_identifier(store):
    [only] = rl.status(store=store, identifier=IP, endpoint=None)
    assert (only.endpoint, only.used, only.allowed, only.blocked) == (None, 0, True, False)
    [one] = rl.status(store=store, identifier=IP, endpoint="/api/auth/login")
    assert (one.used, one.remaining, one.limit) == (0, 5, 5)


def test_top_reports_usage_throttling_and_blocks(store, db):
    hits(store, KEY, "/api/auth/login", 6)  # throttled
    hits(store, IP, "/api/jobs", 10)
    rl.block(
        store=store,
        identifier="ip:198.51.100.1",
        endpoint=None,
        for_seconds=60,
        reason="r",
        actor="t",
    )
    hits(store, "ip:198.51.100.1", "/api/jobs", 3)  # only denials
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "values ('ip:192.0.2.1', '/api/jobs', now() - interval '2 hours')"
    )
    entries = {
        (e.identifier, e.endpoint): e for e in rl.top(store=store, since_seconds=900, limit=20)
    }
    assert set(entries) == {
        ("api_key:****cdef", "/api/auth/login"),
        (IP, "/api/jobs"),
        ("ip:198.51.100.1", "/api/jobs"),
    }
    auth = entries[("api_key:****cdef", "/api/auth/login")]
    assert (auth.requests, auth.allowed, auth.denied, auth.window_requests) == (6, 5, 1, 5)
    assert (auth.limit, auth.percent_of_limit, auth.throttled, auth.blocked) == (
        5,
        100.0,
        True,
        False,
    )
    jobs = entries[(IP, "/api/jobs")]
    assert (jobs.requests, jobs.percent_of_limit, jobs.throttled) == (10, 10.0, False)
    blocked = entries[("ip:198.51.100.1", "/api/jobs")]
    assert (blocked.requests, blocked.denied, blocked.blocked) == (3, 3, True)
    # Default: most denials first (3 > 1 > 0); --sort percent: highest share of the limit.
    ranked = rl.top(store=store, since_seconds=900, limit=20)
    assert [e.identifier for e in ranked] == ["ip:198.51.100.1", "api_key:****cdef", IP]
    first = rl.top(store=store, since_seconds=900, limit=1, sort="percent")
    assert [e.identifier for e in first] == ["api_key:****cdef"]
    by_requests = rl.top(store=store, since_seconds=900, limit=20, sort="requests")
    assert [e.identifier for e in by_requests] == [IP, "api_key:****cdef", "ip:198.51.100.1"]


def test_top_ranks_the_client_refused_most_first(store, db):
    """Issue 15: 4,900 requests of which 1,700 denied, spread over the last quarter hour
    (its 1-minute window is empty now, so 0 % of the limit) must rank first by default,
    not 7th behind six clients with a few requests in the current window."""
    hammer = "ip:203.0.113.66"
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select %s, '/api/jobs', now() - interval '2 minutes' - (g %% 600) * interval '1 second' "
        "from generate_series(1, 3200) g",
        (hammer,),
    )
    db.execute(
        "insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied) "
        "select date_trunc('minute', now()) - g * interval '1 minute', %s, '/api/jobs', 170 "
        "from generate_series(2, 11) g",
        (hammer,),
    )
    for i in range(6):
        hits(store, f"ip:198.51.100.{10 + i}", "/api/admin/users", 3 + i)  # 30-80 % now
    ranked = rl.top(store=store, since_seconds=900, limit=20)
    assert (ranked[0].identifier, ranked[0].requests, ranked[0].denied) == (hammer, 4900, 1700)
    assert ranked[0].percent_of_limit == 0.0
    assert [e.identifier for e in rl.top(store=store, since_seconds=900, limit=1)] == [hammer]
    by_percent = rl.top(store=store, since_seconds=900, limit=20, sort="percent")
    assert by_percent[-1].identifier == hammer and by_percent[0].percent_of_limit == 80.0
    assert rl.top(store=store, since_seconds=900, limit=1, sort="requests")[0].identifier == hammer
    with pytest.raises(UsageError):
        rl.top(store=store, since_seconds=900, limit=1, sort="loudest")


# --------------------------------------------------------------------------- cleanup
def test_cleanup_deletes_only_old_rows_in_batches(store, db):
    db.execute(
        "insert into rate_limit_requests (identifier, endpoint, created_at) "
        "select 'ip:192.0.2.1', '/api/jobs', now() - interval '2 days' - make_interval(secs => g) "
        "from generate_series(1, 25) g"
    )
    db.execute(
        "insert into dbops_rate_limit_denials (minute, identifier, endpoint, denied) values "
        "(date_trunc('minute', now() - interval '3 days'), 'ip:192.0.2.1', '/api/jobs', 4)"
    )
    hits(store, IP, "/api/jobs", 3)
    plan = rl.cleanup_preview(store=store, older_than_seconds=86400)
    assert (plan.requests, plan.denial_rows) == (25, 1)
    done = rl.cleanup(store=store, plan=plan, batch_size=10)
    assert (done.deleted_requests, done.deleted_denials, done.batches) == (25, 1, 3)
    assert rows(db) == 3


def test_cleanup_refuses_to_cut_into_a_live_window(store):
    with pytest.raises(UsageError, match="longest rate-limit window"):
        rl.cleanup_preview(store=store, older_than_seconds=600)  # auth's window is 15 min


# --------------------------------------------------------------------------- identifiers
@pytest.mark.parametrize(
    "good", ["ip:203.0.113.7", "ip:2001:db8::1", "ip:::1", "api_key:x", "api_key:a b;'\"é"]
)
def test_accepted_identifiers(good):
    assert rl.parse_identifier(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ip:",
        "ip:300.1.1.1",
        "ip:example.com",
        "api_key:",
        "user:1",
        "sk_live_secret",
        "API_KEY:abc",
        "ip: 1.2.3.4",
    ],
)
def test_rejected_identifiers_never_echo_secrets(bad):
    with pytest.raises(UsageError) as err:
        rl.parse_identifier(bad)
    if not bad.startswith("ip:"):
        assert "secret" not in err.value.one_line()
        assert "abc" not in err.value.one_line()


# --------------------------------------------------------------------------- endpoints
# (sent, normalised): dbops_rate_limit_normalize_endpoint is the one rule (docs/rate-limiting.md).
NORMALISED = [
    ("/api/auth/login", "/api/auth/login"),
    ("/API/auth/login", "/api/auth/login"),
    ("/api//auth/login", "/api/auth/login"),
    ("/api/auth/login/", "/api/auth/login"),
    ("/api/auth/login?x=1", "/api/auth/login"),
    ("/api/auth/login#top", "/api/auth/login"),
    ("  /Api///Auth//Login//?next=/x#y ", "/api/auth/login"),
    ("api/auth/login", "/api/auth/login"),
    ("/", "/"),
    ("///", "/"),
    ("?x=1", "/"),
    ("/api/jobs/8C1F", "/api/jobs/8c1f"),
]


def test_normalize_endpoint_is_the_sql_rule(store):
    for sent, expected in NORMALISED:
        assert rl.normalize_endpoint(store=store, endpoint=sent) == expected, sent
    assert rl.normalize_endpoint(store=store, endpoint=None) is None
    with pytest.raises(UsageError):
        rl.normalize_endpoint(store=store, endpoint="")


def test_endpoint_variants_share_the_auth_rule_and_its_window(store, db):
    variants = [
        "/API/auth/login",
        "/api//auth/login",
        "/api/auth/login/",
        "/api/auth/login?x=1",
        "/api/auth/login#frag",
        "/Api/Auth/Login",
    ]
    results = [rl.hit(store=store, identifier=IP, endpoint=v) for v in variants]
    assert [r.rule_name for r in results] == ["auth"] * 6  # not `public` (100/min)
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.limit for r in results] == [5] * 6
    logged = db.execute("select distinct endpoint from rate_limit_requests").fetchall()
    assert logged == [{"endpoint": "/api/auth/login"}]
    # The prefix itself (with or without its slash) is an auth endpoint too.
    assert rl.hit(store=store, identifier=IP, endpoint="/api/auth/").rule_name == "auth"
    assert rl.hit(store=store, identifier=IP, endpoint="/api/AUTH").rule_name == "auth"


def test_status_reset_block_and_unblock_normalise_the_endpoint(store, db):
    hits(store, IP, "/api/auth/login?x=1", 3)
    [one] = rl.status(store=store, identifier=IP, endpoint="/API//auth/login/")
    assert (one.endpoint, one.used, one.remaining, one.rule) == ("/api/auth/login", 3, 2, "auth")

    plan = rl.block_preview(
        store=store, identifier=IP, endpoint="/API/Jobs/", for_seconds=60, reason="r"
    )
    assert plan.endpoint == "/api/jobs"
    rl.block(
        store=store, identifier=IP, endpoint="/API/Jobs/", for_seconds=60, reason="r", actor="t"
    )
    assert rl.hit(store=store, identifier=IP, endpoint="/api/jobs?page=2").blocked
    assert not rl.hit(store=store, identifier=IP, endpoint="/api/jobs/1").blocked
    again = rl.block_preview(
        store=store, identifier=IP, endpoint="/api//jobs", for_seconds=60, reason="r"
    )
    assert [b.endpoint for b in again.replaces] == ["/api/jobs"]
    lifted = rl.unblock(store=store, identifier=IP, endpoint="/api/jobs/", actor="t")
    assert (lifted.endpoint, lifted.lifted) == ("/api/jobs", 1)

    reset = rl.reset_preview(store=store, identifier=IP, endpoint="/api/AUTH/login#x")
    assert (reset.endpoint, reset.requests) == ("/api/auth/login", 3)
    assert rl.reset(store=store, identifier=IP, plan=reset).deleted == 3


def test_python_uses_the_sql_rule_rather_than_its_own(database_url, db):
    """Redefine the SQL function: the service follows it (so the two cannot drift)."""
    from dbops.adapters.postgres import PostgresStore

    db.execute(
        "create or replace function dbops_rate_limit_normalize_endpoint(p_endpoint text) "
        "returns text language sql immutable strict as $$ select '/changed' $$"
    )
    store = PostgresStore(database_url)
    try:
        assert rl.normalize_endpoint(store=store, endpoint="/api/jobs") == "/changed"
        plan = rl.reset_preview(store=store, identifier=IP, endpoint="/api/jobs")
        assert plan.endpoint == "/changed"
    finally:
        store.close()


def test_documented_endpoint_examples_match_the_sql_rule(db):
    """The examples in docs/rate-limiting.md ("Endpoints") are what the function does."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "rate-limiting.md").read_text()
    block = doc.split("<!-- normalize-examples")[1].split("<!-- /normalize-examples -->")[0]
    examples = [
        re.findall(r"`([^`]*)`", line) for line in block.splitlines() if line.startswith("| `")
    ]
    assert len(examples) >= 8
    for sent, counted, rule in examples:
        row = db.execute(
            "select dbops_rate_limit_normalize_endpoint(%s) as e, "
            "(select rule_name from dbops_ratelimit_rule_for(%s, 'ip', now())) as rule",
            [sent, sent],
        ).fetchone()
        assert (row["e"], row["rule"]) == (counted, rule), sent
