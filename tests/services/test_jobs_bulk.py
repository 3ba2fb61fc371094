"""dbops.services.jobs bulk actions (retry, fail by filter) against a real Postgres (both
transports) and SQS over HTTP: selection, re-checks under lock, round trips and SQS calls."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.errors import DbopsError, UsageError
from dbops.services import jobs

HOUR = 3600


@pytest.fixture
def sqs(sqs_endpoint: str) -> SqsQueues:
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_attempts=1)


class Counting:
    """The real store, counting each database call by function name; on the Postgres
    transport `wire` also counts the statements the adapter really sends (a call it must
    re-bind by the declared types costs more than one)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.transport = store.transport
        self.holds_sessions = getattr(store, "holds_sessions", False)
        self.calls: Counter[str] = Counter()
        self.wire = 0
        for name in ("_call", "_declared_types"):
            real = getattr(store, name, None)
            if real is not None:
                setattr(store, name, self._counted(real))

    def _counted(self, real: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.wire += 1
            return real(*args, **kwargs)

        return counted

    def call(self, function: str, params: Any = None) -> Any:
        self.calls[function] += 1
        if not hasattr(self.store, "_call"):  # PostgREST: one HTTP request per call
            self.wire += 1
        return self.store.call(function, params)


def _by_job(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.loads(m["Body"])["job_id"] for m in messages)


def test_filter_selects_by_customer_error_and_window(store, job_seed):
    hit = job_seed.job(status="failed", idle=2 * HOUR, customer="acme", error="Timeout after 30s")
    job_seed.job(status="failed", idle=2 * HOUR, customer="acme", error="out of memory")
    job_seed.job(status="failed", idle=2 * HOUR, customer="beta", error="timeout after 31s")
    job_seed.job(status="failed", idle=10 * HOUR, customer="acme", error="timeout")
    job_seed.job(status="failed", idle=60, customer="acme", error="timeout")
    job_seed.job(status="pending", idle=2 * HOUR, customer="acme", error="timeout")

    chosen = jobs.job_filter(
        customer="acme", error_like="TIMEOUT", since_seconds=5 * HOUR, until_seconds=HOUR
    )
    found, more = jobs.select_jobs(store=store, action="retry", job_ids=None, filter=chosen)

    assert [str(j.id) for j in found] == [hit] and more is False


def test_filter_limit_reports_more_and_fail_defaults_to_pending_and_in_progress(store, job_seed):
    job_seed.many(5, status="failed", customer_prefix="acme")
    pending = job_seed.job(status="pending", customer="zed", idle=HOUR)
    running = job_seed.job(status="in_progress", customer="zed", idle=HOUR)
    job_seed.job(status="completed", customer="zed", idle=HOUR)

    found, more = jobs.select_jobs(
        store=store, action="retry", job_ids=None, filter=jobs.job_filter(status="failed", limit=3)
    )
    assert len(found) == 3 and more is True
    found, more = jobs.select_jobs(
        store=store, action="fail", job_ids=None, filter=jobs.job_filter(customer="zed")
    )
    assert {str(j.id) for j in found} == {pending, running} and more is False


@pytest.mark.parametrize(
    "kwargs, action, words",
    [
        ({"status": "bogus"}, "retry", "status check allows only"),
        ({"status": "completed"}, "retry", "acts on failed jobs only"),
        ({"status": "failed"}, "fail", "acts on pending or in_progress jobs only"),
    ],
)
def test_statuses_are_checked_in_sql(store, kwargs, action, words):
    with pytest.raises(DbopsError) as caught:
        jobs.select_jobs(store=store, action=action, job_ids=None, filter=jobs.job_filter(**kwargs))
    assert caught.value.exit_code == 2 and words in caught.value.one_line()


def test_bad_filters_are_usage_errors(store):
    with pytest.raises(UsageError, match="--customer"):
        jobs.job_filter(customer="  ")
    with pytest.raises(UsageError, match="window is empty"):
        jobs.job_filter(since_seconds=60, until_seconds=HOUR)
    with pytest.raises(UsageError, match="--limit"):
        jobs.job_filter(status="failed", limit=0)
    assert jobs.job_filter(limit=5) is None  # --limit alone is no filter
    with pytest.raises(UsageError, match="at least one filter"):
        jobs.retry_preview(store=store)
    with pytest.raises(UsageError, match="not both"):
        jobs.retry_preview(
            store=store,
            job_ids=["00000000-0000-0000-0000-000000000001"],
            filter=jobs.job_filter(status="failed"),
        )
    # The SQL refuses an empty filter on its own too.
    with pytest.raises(DbopsError, match="at least one filter"):
        store.call("dbops_jobs_match", {"p_action": "retry"})


def test_retry_by_filter_costs_one_round_trip_per_chunk_plus_two_counting_everything(
    store, job_seed, queues, sqs, db
):
    """Preview 1 + one step per chunk (the first also registers the run and takes what an
    earlier run left unsent) + 1 finish (last record, release, outbox state): 45 jobs in
    chunks of 20 plus 3 left unsent cost 5 round trips; SQS batches of 10 per step."""
    ids = job_seed.many(45, status="failed", customer_prefix="acme")
    left = job_seed.many(3, status="failed", customer_prefix="other")
    db.execute(
        "select * from dbops_jobs_requeue(%s::jsonb, 'carol', 'run-gone', 300)", [json.dumps(left)]
    )
    db.execute("update dbops_job_recoveries set sending_until = now() - interval '1 minute'")
    sends: list[str] = []
    sqs.client.meta.events.register(
        "before-call.sqs.SendMessageBatch", lambda **kw: sends.append("x")
    )
    counting = Counting(store)

    preview = jobs.retry_preview(store=counting, filter=jobs.job_filter(status="failed"))

    assert (len(preview.jobs), preview.outbox.unsent) == (45, 3)
    assert counting.calls == {"dbops_jobs_retry_preview": 1}
    result = jobs.retry(
        store=counting,
        queues=sqs,
        queue_url=queues.main_url,
        operator="alice",
        preview=preview,
        chunk_size=20,
    )

    assert (result.matched, result.retried, result.resumed, result.sent) == (45, 45, 3, 48)
    assert (result.skipped, result.unsent_remaining, result.possibly_duplicated) == (0, 0, 0)
    assert len(sends) == 6  # per step in batches of at most 10: 3 + 20 in 3, 20 in 2, 5 in 1
    assert counting.calls == {
        "dbops_jobs_retry_preview": 1,
        "dbops_jobs_retry_step": 3,  # one per chunk of 20
        "dbops_jobs_outbox_finish": 1,
    }
    assert counting.wire == sum(counting.calls.values())  # no hidden re-bind round trip
    assert _by_job(queues.drain(queues.main_url)) == Counter(ids + left)
    states = db.execute("select state, count(*) as n from dbops_job_recoveries group by 1")
    assert {r["state"]: r["n"] for r in states} == {"sent": 48}
    runs = db.execute("select command, finished_at from dbops_job_runs").fetchall()
    assert [r["command"] for r in runs] == ["jobs retry"]
    assert runs[0]["finished_at"] is not None  # released by the finish call


def test_retry_step_takes_until_the_outbox_is_empty(store, job_seed, queues, sqs, db):
    """More rows left unsent than a chunk: the steps keep taking a chunk of them each."""
    left = job_seed.many(25, status="failed", customer_prefix="other")
    db.execute(
        "select * from dbops_jobs_requeue(%s::jsonb, 'carol', 'run-gone', 300)", [json.dumps(left)]
    )
    db.execute("update dbops_job_recoveries set sending_until = now() - interval '1 minute'")
    ids = job_seed.many(5, status="failed", customer_prefix="acme")
    counting = Counting(store)
    preview = jobs.retry_preview(store=counting, filter=jobs.job_filter(customer="acme1"))
    result = jobs.retry(
        store=counting,
        queues=sqs,
        queue_url=queues.main_url,
        operator="alice",
        preview=preview,
        chunk_size=10,
    )

    assert (result.retried, result.resumed, result.sent) == (1, 25, 26)
    # steps: chunk + 10 taken, 10 taken, 5 taken (not full: done); then the finish
    assert counting.calls["dbops_jobs_retry_step"] == 3
    assert counting.calls["dbops_jobs_outbox_finish"] == 1
    assert _by_job(queues.drain(queues.main_url)) == Counter([*left, ids[0]])


def test_retry_skips_jobs_changed_or_deleted_after_the_preview(store, job_seed, queues, sqs, db):
    changed, deleted, kept = (
        job_seed.job(status="failed", idle=HOUR, customer="acme") for _ in range(3)
    )
    pending = job_seed.job(status="pending", idle=HOUR, customer="acme")
    preview = jobs.retry_preview(store=store, job_ids=[changed, deleted, kept, pending])
    assert (preview.would_act, preview.would_skip) == (3, 1)
    db.execute("update jobs set status = 'completed' where id = %s", [changed])
    db.execute("delete from jobs where id = %s", [deleted])

    result = jobs.retry(
        store=store, queues=sqs, queue_url=queues.main_url, operator="bob", preview=preview
    )

    assert (result.retried, result.skipped, result.skipped_changed, result.sent) == (1, 3, 2, 1)
    reasons = {str(j.job_id): j.error or "" for j in result.jobs}
    assert "retry re-queues failed jobs only" in reasons[pending]
    assert reasons[deleted].startswith("skipped_changed")
    assert reasons[changed].startswith("skipped_changed")
    assert _by_job(queues.drain(queues.main_url)) == Counter([kept])
    status = db.execute("select status from jobs where id = %s", [changed]).fetchone()["status"]
    assert status == "completed"


def test_fail_by_filter_rechecks_under_lock(store, job_seed, db):
    a, b = (
        job_seed.job(status="pending", customer="acme"),
        job_seed.job(status="pending", customer="acme"),
    )
    fresh = job_seed.job(status="in_progress", idle=10, customer="acme")
    preview = jobs.fail_bulk_preview(store=store, filter=jobs.job_filter(customer="acme"))
    assert (len(preview.jobs), preview.would_act) == (3, 2)
    db.execute("update jobs set status = 'in_progress', updated_at = now() where id = %s", [b])

    result = jobs.fail_bulk(store=store, preview=preview, reason="account closed", operator="eve")

    assert (result.matched, result.failed, result.skipped, result.skipped_changed) == (3, 1, 2, 1)
    statuses = {
        str(r["id"]): r["status"] for r in db.execute("select id, status from jobs").fetchall()
    }
    assert statuses == {a: "failed", b: "in_progress", fresh: "in_progress"}
