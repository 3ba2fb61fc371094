"""dbops.services.jobs against a real Postgres (both transports) and SQS over HTTP."""

from __future__ import annotations

import json
import socket
from collections import Counter
from typing import Any

import psycopg
import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.errors import NotFoundError, UsageError
from dbops.services import jobs

HOUR = 3600


@pytest.fixture
def sqs(sqs_endpoint: str) -> SqsQueues:
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_attempts=1)


def _recover(store: Any, sqs: SqsQueues, url: str, **kwargs: Any) -> jobs.RecoverResult:
    params: dict[str, Any] = {"older_than_seconds": 600, "operator": "alice"}
    params.update(kwargs)
    return jobs.recover(store=store, queues=sqs, queue_url=url, **params)


def _by_job(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.loads(m["Body"])["job_id"] for m in messages)


# --------------------------------------------------------------------------- definitions
def test_stale_uses_the_latest_sign_of_life(store, job_seed):
    idle_no_worker = job_seed.job(idle=HOUR)
    held_by_live_worker = job_seed.job(idle=HOUR)
    job_seed.heartbeat(held_by_live_worker, age=15)
    fresh_row = job_seed.job(idle=30)
    held_by_dead_worker = job_seed.job(idle=HOUR)
    dead_worker = job_seed.heartbeat(held_by_dead_worker, age=1200)
    job_seed.job(status="pending", idle=HOUR)

    found = {str(s.id): s for s in jobs.stale(store=store, older_than_seconds=600)}

    assert set(found) == {idle_no_worker, held_by_dead_worker}
    assert found[idle_no_worker].worker_id is None
    assert found[idle_no_worker].worker_alive is False
    dead = found[held_by_dead_worker]
    assert str(dead.worker_id) == dead_worker and dead.worker_alive is False
    assert dead.age_seconds == pytest.approx(1200, abs=30)
    assert fresh_row not in found and held_by_live_worker not in found


def test_stale_reports_worker_alive_and_recoveries(store, job_seed, db):
    job = job_seed.job(idle=HOUR)
    job_seed.heartbeat(job, age=100)  # within the 2 minute worker-dead threshold
    db.execute(
        """insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state)
           values (%s, 'stale', 'requeued', 1, 'x', 'sent'),
                  (%s, 'stale', 'requeued', 2, 'x', 'sent')""",
        [job, job],
    )
    (row,) = jobs.stale(store=store, older_than_seconds=90)
    assert row.worker_alive is True and row.recoveries == 2
    assert jobs.stale(store=store, older_than_seconds=600) == []


def test_orphans_definition(store, job_seed, db):
    never_claimed = job_seed.job(status="pending", idle=HOUR)
    claimed_since = job_seed.job(status="pending", idle=HOUR)
    job_seed.event(claimed_since, "queue_claimed", age=60)
    claimed_before_it_became_pending = job_seed.job(status="pending", idle=HOUR, created=3 * HOUR)
    job_seed.event(claimed_before_it_became_pending, "queue_claimed", age=2 * HOUR)
    too_young = job_seed.job(status="pending", idle=300)
    requeued_by_dbops = job_seed.job(status="pending", idle=HOUR)
    db.execute(
        """insert into dbops_job_recoveries
               (job_id, kind, action, attempt, operator, state, created_at)
           values (%s, 'manual', 'requeued', 1, 'x', 'sent', now() - interval '1 hour')""",
        [requeued_by_dbops],
    )
    job_seed.job(status="in_progress", idle=HOUR)

    found = {str(o.id) for o in jobs.orphans(store=store, older_than_seconds=1800)}

    assert found == {never_claimed, claimed_before_it_became_pending}
    assert too_young not in found


def test_list_filters(store, job_seed):
    a = job_seed.job(status="failed", customer="acme", idle=60, error="boom")
    job_seed.job(status="failed", customer="globex", idle=60)
    legacy = job_seed.job(status="complete", customer="acme", idle=60)
    done = job_seed.job(status="completed", customer="acme", idle=60)
    job_seed.job(status="failed", customer="acme", idle=3 * 86400)

    failed = jobs.list_jobs(store=store, status="failed", customer="acme", since_seconds=86400)
    assert [str(j.id) for j in failed] == [a]
    assert failed[0].error_message == "boom"
    completed = {str(j.id) for j in jobs.list_jobs(store=store, status="completed")}
    assert completed == {legacy, done}
    assert len(jobs.list_jobs(store=store, limit=2)) == 2
    with pytest.raises(UsageError, match="bogus"):
        jobs.list_jobs(store=store, status="bogus")


def test_show_gathers_results_history_worker_and_recoveries(store, job_seed, db):
    job = job_seed.job(idle=HOUR)
    worker = job_seed.heartbeat(job, age=30)
    for i in range(25):
        job_seed.event(job, f"event_{i}", age=1000 - i)
    job_seed.result(job, "submitted", directory="a")
    job_seed.result(job, "submitted", directory="b")
    job_seed.result(job, "submitting", directory="c")
    db.execute(
        """insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state)
           values (%s, 'stale', 'requeued', 1, 'bob', 'sent')""",
        [job],
    )

    detail = jobs.show(store=store, job_id=job)

    assert str(detail.job.id) == job
    assert detail.results_by_status == {"submitted": 2, "submitting": 1}
    assert len(detail.history) == 20
    assert detail.history[0].event == "event_24"
    assert detail.worker is not None and str(detail.worker.worker_id) == worker
    assert detail.worker.alive is True
    assert detail.worker.heartbeat_age_seconds == pytest.approx(30, abs=30)
    assert [r.operator for r in detail.recoveries] == ["bob"]
    assert detail.dlq_messages is None


def test_show_unknown_and_malformed_ids(store):
    with pytest.raises(NotFoundError):
        jobs.show(store=store, job_id="00000000-0000-0000-0000-000000000001")
    with pytest.raises(UsageError, match="not-a-uuid"):
        jobs.show(store=store, job_id="not-a-uuid")


def test_show_peeks_dlq_messages_without_consuming_them(store, job_seed, queues, sqs):
    job = job_seed.job(idle=HOUR)
    other = job_seed.job(idle=HOUR)
    for body in (
        json.dumps({"job_id": job, "_dlq_reason": "timeout"}),
        json.dumps({"job_id": other}),
        "not json at all",
    ):
        queues.client.send_message(QueueUrl=queues.dlq_url, MessageBody=body)
    queues.client.send_message(
        QueueUrl=queues.dlq_url,
        MessageBody="<xml/>",
        MessageAttributes={"job_id": {"DataType": "String", "StringValue": job}},
    )

    detail = jobs.show(store=store, job_id=job, queues=sqs, dlq_url=queues.dlq_url)

    assert detail.dlq_scanned == 4
    assert detail.dlq_messages is not None
    assert sorted(m.reason or "" for m in detail.dlq_messages) == ["", "timeout"]
    # Peeked, not consumed: every message is visible again straight away.
    assert queues.visible(queues.dlq_url) == 4
    assert len(queues.drain(queues.dlq_url)) == 4


def test_stats(store, job_seed, db):
    for runtime in (10, 20, 30, 40):
        job_seed.job(status="completed", idle=600, started=600 + runtime, completed=600)
    job_seed.job(status="complete", idle=600, started=700, completed=600)
    job_seed.job(status="failed", idle=600)
    job_seed.job(status="failed", idle=3 * 86400)
    job_seed.job(status="pending", idle=60)
    stuck = job_seed.job(status="in_progress", idle=60)
    job_seed.result(stuck, "submitting", age=1800)
    job_seed.result(stuck, "submitting", age=60, directory="recent")

    result = jobs.stats(store=store, since_seconds=86400)

    assert result.completed == 5 and result.failed == 1
    assert result.error_rate == pytest.approx(100 / 6, abs=0.01)
    assert result.runtime_p50_seconds == pytest.approx(30)
    assert result.runtime_p95_seconds == pytest.approx(90, abs=15)
    assert result.stuck_submitting == 1
    assert result.legacy_complete == 1
    assert result.by_status == {
        "completed": 4,
        "complete": 1,
        "failed": 1,
        "pending": 1,
        "in_progress": 1,
    }
    assert len(result.hourly) in (24, 25)
    assert sum(h.completed for h in result.hourly) == 5
    assert sum(h.failed for h in result.hourly) == 1


# --------------------------------------------------------------------------- recover
def test_recover_sends_producer_shaped_messages_and_records_them(store, job_seed, queues, sqs, db):
    ids = [
        job_seed.job(
            idle=HOUR, customer=f"c{i}", priority=1 + i % 3, metadata={"source": "api", "n": i}
        )
        for i in range(12)
    ]

    result = _recover(store, sqs, queues.main_url)

    assert (result.claimed, result.requeued, result.abandoned) == (12, 12, 0)
    assert (result.sent, result.failed_sends, result.unsent_remaining) == (12, 0, 0)
    messages = queues.drain(queues.main_url)
    assert _by_job(messages) == Counter(ids)
    sample = next(m for m in messages if json.loads(m["Body"])["job_id"] == ids[1])
    body = json.loads(sample["Body"])
    assert body["customer_id"] == "c1" and body["priority"] == 2 and body["package_size"] == 5
    assert body["source"] == "api" and body["metadata"] == {"source": "api", "n": 1}
    assert body["retry_attempt"] == 1 and body["requeued_by"] == "dbops:alice"
    assert body["created_at"].endswith("Z") and body["requeued_at"].endswith("Z")
    attrs = sample["MessageAttributes"]
    assert attrs["job_id"] == {"StringValue": ids[1], "DataType": "String"}
    assert attrs["customer_id"]["StringValue"] == "c1"
    assert attrs["priority"] == {"StringValue": "2", "DataType": "Number"}

    rows = db.execute("select job_id::text, state, message_id from dbops_job_recoveries").fetchall()
    assert {r["state"] for r in rows} == {"sent"}
    assert {r["message_id"] for r in rows} == {m["MessageId"] for m in messages}
    statuses = db.execute("select distinct status from jobs").fetchall()
    assert [s["status"] for s in statuses] == ["pending"]
    events = Counter(
        r["event"] for r in db.execute("select event, details from queue_history").fetchall()
    )
    assert events == {"requeued_stale": 12, "requeue_sent": 12}
    detail = db.execute(
        "select details from queue_history where event = 'requeued_stale' limit 1"
    ).fetchone()["details"]
    assert detail["operator"] == "alice"


def test_recover_uses_one_sqs_call_and_one_db_call_per_batch(store, job_seed, queues, sqs):
    job_seed.many(35, idle=HOUR)
    sends: list[str] = []
    sqs.client.meta.events.register(
        "before-call.sqs.SendMessageBatch", lambda **kw: sends.append("x")
    )

    class Counting:
        transport = store.transport

        def __init__(self) -> None:
            self.calls: Counter[str] = Counter()

        def call(self, function: str, params: Any = None) -> Any:
            self.calls[function] += 1
            return store.call(function, params)

    counting = Counting()
    result = _recover(counting, sqs, queues.main_url)

    assert result.sent == 35
    assert len(sends) == 4
    assert counting.calls["dbops_jobs_outbox_mark"] == 4
    assert counting.calls["dbops_jobs_claim_stale"] == 1


def test_jobs_at_the_cap_are_failed_not_requeued_and_say_why(store, job_seed, queues, sqs, db):
    capped = job_seed.job(idle=HOUR)
    under = job_seed.job(idle=HOUR)
    for attempt in (1, 2, 3):
        db.execute(
            """insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state)
               values (%s, 'stale', 'requeued', %s, 'x', 'sent')""",
            [capped, attempt],
        )

    result = _recover(store, sqs, queues.main_url, max_recoveries=3)

    assert (result.claimed, result.requeued, result.abandoned, result.sent) == (2, 1, 1, 1)
    assert _by_job(queues.drain(queues.main_url)) == Counter([under])
    row = db.execute("select status, error_message from jobs where id = %s", [capped]).fetchone()
    assert row["status"] == "failed"
    assert "recovery cap reached" in row["error_message"]
    assert "max 3" in row["error_message"] and "alice" in row["error_message"]
    event = db.execute(
        "select details from queue_history where job_id = %s and event = 'abandoned_stale'",
        [capped],
    ).fetchone()
    assert event["details"]["operator"] == "alice"
    assert {j.action for j in result.jobs if str(j.job_id) == capped} == {"abandoned"}


@pytest.mark.parametrize(
    "older_than, limit, max_recoveries",
    [(120, 100_000, 3), (600, 1, 0), (86400 * 30, 50, 10), (121, 1000, 0)],
)
def test_fresh_jobs_are_never_claimed_whatever_the_flags(
    store, job_seed, queues, sqs, db, older_than, limit, max_recoveries
):
    job_seed.job(idle=5)
    fresh_beat = job_seed.job(idle=40 * 86400)
    job_seed.heartbeat(fresh_beat, age=10)
    almost_dead = job_seed.job(idle=40 * 86400)
    # Younger than the 2 minute floor, and far enough from it that the seconds a busy
    # machine takes before the claim cannot carry it past.
    job_seed.heartbeat(almost_dead, age=90)
    before = db.execute("select id, status, updated_at from jobs order by id").fetchall()

    result = _recover(
        store,
        sqs,
        queues.main_url,
        older_than_seconds=older_than,
        limit=limit,
        max_recoveries=max_recoveries,
    )

    assert result.claimed == 0
    assert db.execute("select id, status, updated_at from jobs order by id").fetchall() == before
    assert queues.drain(queues.main_url) == []


def test_claim_refuses_thresholds_under_the_floor_in_sql_too(store):
    with pytest.raises(UsageError, match="at least 120 seconds"):
        store.call(
            "dbops_jobs_claim_stale",
            {
                "p_older_than_seconds": 1,
                "p_limit": 10,
                "p_max_recoveries": 3,
                "p_operator": "x",
                "p_lease_owner": "h:1:x",
                "p_min_older_than_seconds": 0,
            },
        )
    with pytest.raises(UsageError, match="at least 2m"):
        jobs.check_recover_threshold(119, given="119s")


def test_claim_skips_a_job_whose_worker_is_touching_it(store, job_seed, queues, sqs, database_url):
    busy = job_seed.job(idle=HOUR)
    idle = job_seed.job(idle=HOUR)
    with psycopg.connect(database_url) as worker:
        # A worker is updating the row right now (its transaction holds the row lock).
        worker.execute("update jobs set updated_at = now() where id = %s", [busy])
        result = _recover(store, sqs, queues.main_url)
        worker.commit()
    assert [str(j.job_id) for j in result.jobs] == [idle]
    assert jobs.stale(store=store, older_than_seconds=600) == []


def test_outbox_leases_keep_two_runs_apart(store, job_seed, db):
    job_seed.many(6, idle=HOUR)
    claimed = store.call(
        "dbops_jobs_claim_stale",
        {
            "p_older_than_seconds": 600,
            "p_limit": 10,
            "p_max_recoveries": 3,
            "p_operator": "x",
            "p_lease_owner": "elsewhere:1:a",
        },
    )
    assert len(claimed) == 6
    take = {"p_limit": 10, "p_lease_seconds": 300}
    # Leased to a live run: nobody else may take them.
    assert store.call("dbops_jobs_outbox_take", {"p_lease_owner": "b", **take}) == []
    # A run known dead can be taken over, by one taker only.
    first = store.call(
        "dbops_jobs_outbox_take",
        {"p_lease_owner": "b", "p_takeover_owners": ["elsewhere:1:a"], **take},
    )
    second = store.call(
        "dbops_jobs_outbox_take",
        {"p_lease_owner": "c", "p_takeover_owners": ["elsewhere:1:a"], **take},
    )
    assert len(first) == 6 and second == []
    # An expired lease is free again.
    db.execute("update dbops_job_recoveries set sending_until = now() - interval '1 second'")
    assert len(store.call("dbops_jobs_outbox_take", {"p_lease_owner": "c", **take})) == 6


def test_outbox_rows_of_jobs_no_longer_pending_are_skipped(store, job_seed, queues, sqs, db):
    a, b = job_seed.many(2, idle=HOUR)
    store.call(
        "dbops_jobs_claim_stale",
        {
            "p_older_than_seconds": 600,
            "p_limit": 10,
            "p_max_recoveries": 3,
            "p_operator": "x",
            "p_lease_owner": "elsewhere:1:a",
            "p_lease_seconds": 1,
        },
    )
    db.execute("update dbops_job_recoveries set sending_until = now() - interval '1 second'")
    db.execute("update jobs set status = 'completed' where id = %s", [a])

    result = _recover(store, sqs, queues.main_url)

    assert (result.resumed, result.skipped_unsent, result.sent) == (1, 1, 1)
    assert _by_job(queues.drain(queues.main_url)) == Counter([b])
    state = db.execute(
        "select state, last_error from dbops_job_recoveries where job_id = %s", [a]
    ).fetchone()
    assert state["state"] == "skipped" and "completed" in state["last_error"]


def _claim_for(store: Any, owner: str, *, lease: int = 300) -> list[Any]:
    return store.call(
        "dbops_jobs_claim_stale",
        {
            "p_older_than_seconds": 600,
            "p_limit": 10,
            "p_max_recoveries": 3,
            "p_operator": "x",
            "p_lease_owner": owner,
            "p_lease_seconds": lease,
        },
    )


def test_a_killed_run_is_taken_over_at_once_wherever_it_ran(
    store, job_seed, queues, sqs, database_url
):
    """A run is identified by a random id held in the database, not by host and pid: a
    run in another container with the same hostname and pid is not taken for dead while
    its session lives, and is taken over as soon as its session is gone."""
    ids = job_seed.many(3, idle=HOUR)
    other = psycopg.connect(database_url, autocommit=True)  # the other run's own session
    owner = f"{socket.gethostname()}-container:1:run"
    other.execute(
        "select * from dbops_jobs_run_start(%s, 'bob', 'jobs recover', 300, true)", [owner]
    )
    _claim_for(store, owner)
    state, _ = jobs.outbox_state(store=store)
    assert (state.unsent, state.leased_elsewhere) == (3, 3)
    alive = _recover(store, sqs, queues.main_url)
    assert (alive.resumed, alive.sent, alive.leased_elsewhere) == (0, 0, 3)
    assert queues.drain(queues.main_url) == []

    pid = other.info.backend_pid
    other.close()  # killed: its session (and advisory lock) ends with it
    # The server ends that session's backend a moment after the client is gone.
    with psycopg.connect(database_url, autocommit=True) as watcher:
        while watcher.execute(
            "select count(*) from pg_stat_activity where pid = %s", [pid]
        ).fetchone()[0]:
            watcher.execute("select pg_sleep(0.02)")
    state, _ = jobs.outbox_state(store=store)
    assert (state.unsent, state.leased_elsewhere) == (3, 0)
    result = _recover(store, sqs, queues.main_url)
    assert (result.resumed, result.claimed, result.sent) == (3, 0, 3)
    assert all(j.resumed for j in result.jobs)
    assert _by_job(queues.drain(queues.main_url)) == Counter(ids)


def test_a_stalled_run_cannot_record_rows_another_run_took_over(
    job_seed, queues, sqs, database_url, db
):
    """Two runs with a 1-second lease: the first stalls after SQS accepted its batch,
    the second takes the rows over once the lease expired and sends them; the first's
    record is rejected and reported as possibly duplicated. Nothing is lost."""
    import threading

    from dbops.adapters.postgres import PostgresStore

    ids = job_seed.many(4, idle=HOUR)
    reached, resume = threading.Event(), threading.Event()

    def stall(point: str) -> None:
        if point == "after_send" and not reached.is_set():
            reached.set()
            resume.wait(60)

    first_store, second_store = PostgresStore(database_url), PostgresStore(database_url)
    outcome: dict[str, Any] = {}

    def first() -> None:
        outcome["first"] = _recover(
            first_store, sqs, queues.main_url, lease_seconds=1, checkpoint=stall
        )

    runner = threading.Thread(target=first)
    runner.start()
    try:
        assert reached.wait(60)
        # Wait for the database to see the lease expired (the run is alive but stalled).
        while db.execute(
            "select bool_or(sending_until > clock_timestamp()) as held "
            "from dbops_job_recoveries where state = 'pending_send'"
        ).fetchone()["held"]:
            db.execute("select pg_sleep(0.05)")
        second = _recover(second_store, sqs, queues.main_url, lease_seconds=60)
    finally:
        resume.set()
        runner.join(60)
    first_result = outcome["first"]
    assert (second.resumed, second.sent, second.possibly_duplicated) == (4, 4, 0)
    assert first_result.possibly_duplicated == 4
    assert first_result.counts()["possibly_duplicated"] == 4
    rows = db.execute("select state, message_id from dbops_job_recoveries order by id").fetchall()
    assert [r["state"] for r in rows] == ["sent"] * 4
    by_job = _by_job(queues.drain(queues.main_url))
    assert by_job == Counter(ids * 2)  # each sent by both runs: duplicated, never lost
    first_store.close()
    second_store.close()


def test_fifo_main_queue_gets_group_and_deduplication_ids(store, job_seed, sqs, sqs_client, db):
    import uuid as _uuid

    url = sqs_client.create_queue(
        QueueName=f"jobs-{_uuid.uuid4().hex[:10]}.fifo",
        Attributes={"FifoQueue": "true"},
    )["QueueUrl"]
    ids = job_seed.many(3, idle=HOUR)
    result = _recover(store, sqs, url)
    assert result.sent == 3
    got = sqs_client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    groups = {m["Attributes"]["MessageGroupId"] for m in got}
    assert groups == set(ids)
    dedup = {m["Attributes"].get("MessageDeduplicationId") for m in got}
    assert len(dedup) == 3 and all(d and d.startswith("dbops-recovery-") for d in dedup)
    # The same recovery sent again within 5 minutes is dropped by SQS itself.
    row = db.execute(
        "select r.id as outbox_id, r.job_id, r.attempt, r.operator, r.created_at as requeued_at, "
        "j.customer_id, j.package_size, j.priority_level, j.created_at, j.metadata "
        "from dbops_job_recoveries r join jobs j on j.id = r.job_id order by r.id limit 1"
    ).fetchone()
    again = jobs._outgoing(dict(row), fifo=True)
    sqs.send_batch(url, [again])
    sqs_client.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
    )
    assert sqs_client.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None


def test_fifo_group_by_customer(store, job_seed, sqs, sqs_client):
    import uuid as _uuid

    url = sqs_client.create_queue(
        QueueName=f"jobs-{_uuid.uuid4().hex[:10]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    job_seed.many(2, idle=HOUR)
    result = _recover(store, sqs, url, group_by="customer")
    assert result.sent == 2
    got = sqs_client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    customers = {json.loads(m["Body"])["customer_id"] for m in got}
    assert {m["Attributes"]["MessageGroupId"] for m in got} == customers


def test_requeue_orphans_rechecks_them_under_lock(store, job_seed, queues, sqs):
    orphan = job_seed.job(status="pending", idle=HOUR)
    claimed_meanwhile = job_seed.job(status="pending", idle=HOUR)
    preview = jobs.requeue_preview(store=store, orphans_older_than_seconds=1800)
    assert {str(j.id) for j in preview.jobs} == {orphan, claimed_meanwhile}
    job_seed.event(claimed_meanwhile, "queue_claimed")

    result = jobs.requeue(
        store=store,
        queues=sqs,
        queue_url=queues.main_url,
        operator="alice",
        job_ids=[str(j.id) for j in preview.jobs],
        orphans_older_than_seconds=1800,
    )

    assert (result.requeued, result.skipped) == (1, 1)
    assert _by_job(queues.drain(queues.main_url)) == Counter([orphan])
    assert jobs.orphans(store=store, older_than_seconds=1800) == []


def test_requeue_unknown_and_malformed_ids(store, job_seed, queues, sqs, db):
    known = job_seed.job(status="pending", idle=60)
    with pytest.raises(NotFoundError, match="00000000-0000-0000-0000-00000000000a"):
        jobs.requeue(
            store=store,
            queues=sqs,
            queue_url=queues.main_url,
            operator="x",
            job_ids=[known, "00000000-0000-0000-0000-00000000000a"],
        )
    with pytest.raises(UsageError, match="nope"):
        jobs.requeue(
            store=store,
            queues=sqs,
            queue_url=queues.main_url,
            operator="x",
            job_ids=[known, "nope"],
        )
    assert db.execute("select count(*) as n from dbops_job_recoveries").fetchone()["n"] == 0
    assert queues.drain(queues.main_url) == []


def test_fail_jobs_with_a_reason(store, job_seed, db):
    pending = job_seed.job(status="pending", idle=60)
    dead = job_seed.job(status="in_progress", idle=HOUR)
    alive = job_seed.job(status="in_progress", idle=HOUR)
    job_seed.heartbeat(alive, age=5)
    done = job_seed.job(status="completed", idle=60)

    preview = jobs.fail_preview(store=store, job_ids=[pending, dead, alive, done])
    planned = jobs.fail_dry_run(preview, "bad input")
    result = jobs.fail(
        store=store, job_ids=[pending, dead, alive, done], reason="bad input", operator="alice"
    )

    assert (result.failed, result.skipped) == (2, 2) == (planned.failed, planned.skipped)
    changed = {str(j.job_id) for j in result.jobs if j.changed}
    assert changed == {pending, dead} == {str(j.job_id) for j in planned.jobs if j.changed}
    row = db.execute("select status, error_message from jobs where id = %s", [dead]).fetchone()
    assert row["status"] == "failed" and row["error_message"] == "dbops: failed by alice: bad input"
    assert db.execute("select status from jobs where id = %s", [alive]).fetchone()["status"] == (
        "in_progress"
    )
    with pytest.raises(NotFoundError):
        jobs.fail(
            store=store,
            job_ids=["00000000-0000-0000-0000-000000000002"],
            reason="x",
            operator="alice",
        )


def test_sql_job_id_checks_are_shared_and_unchanged(store, job_seed):
    """dbops_jobs_get, _requeue and _fail check their ids alike (dbops_jobs_ids) and
    re-check the previewed status alike (dbops_jobs_changed)."""
    known = job_seed.job(status="pending", idle=HOUR)
    unknown = "00000000-0000-0000-0000-00000000000b"
    calls: dict[str, dict[str, Any]] = {
        "dbops_jobs_get": {},
        "dbops_jobs_requeue": {"p_operator": "alice", "p_lease_owner": "run-sql-check"},
        "dbops_jobs_fail": {"p_reason": "checked", "p_operator": "alice"},
    }
    for name, extra in calls.items():
        with pytest.raises(UsageError, match="job ids must be a JSON array of UUIDs"):
            store.call(name, {"p_job_ids": {"a": 1}, **extra})
        with pytest.raises(NotFoundError, match=f"not found: job {unknown}"):
            store.call(name, {"p_job_ids": [known, unknown], **extra})
    # The ids are still checked before the other arguments.
    with pytest.raises(UsageError, match="JSON array"):
        store.call("dbops_jobs_fail", {"p_job_ids": {}, "p_reason": "", "p_operator": "alice"})
    changed = "skipped_changed: status is pending now, failed when previewed"
    expected = {"p_expected": {known: "failed"}}
    (failed,) = store.call(
        "dbops_jobs_fail", {"p_job_ids": [known], **calls["dbops_jobs_fail"], **expected}
    )
    assert failed["changed"] is False and failed["reason"].startswith(changed)
    (requeued,) = store.call(
        "dbops_jobs_requeue", {"p_job_ids": [known], **calls["dbops_jobs_requeue"], **expected}
    )
    assert requeued["action"] == "skipped" and requeued["reason"].startswith(changed)
