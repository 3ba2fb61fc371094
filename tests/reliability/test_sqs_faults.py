"""SQS throttling and 5xx under the queue-touching commands (architecture.md section 5.1).

A real HTTP proxy (tests/faultproxy.py) sits between dbops and the session's SQS server
and fails a deterministic share of calls with the errors SQS's JSON protocol returns:
ThrottlingException / RequestThrottled (400), InternalFailure (500), ServiceUnavailable
(503). botocore's standard retry mode retries all of them, so with every third call
failing each command must finish with correct results. When every call fails, each must
exit 5 with one line. Either way, afterwards every message is still in the DLQ or the main
queue, checked body by body on the real queues (the proxy is bypassed for that).

A variant loses the responses of sends that SQS did carry out: retries then send twice, so
duplicates are allowed there, losses never.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QueuePair
from tests.faultproxy import RETRYABLE, FaultProxy
from tests.forkserver import DbopsProcess
from tests.helpers import invoke, one_line_error

pytestmark = pytest.mark.sqs

COUNT = 25  # messages in the DLQ (and stale jobs): three SQS batches, a few faults each
HOUR = 3600


@pytest.fixture
def proxy(
    env: QueuePair, sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """The proxy, started, with dbops pointed at it (the test's own client is not)."""
    started = FaultProxy(sqs_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", started.url)
    yield started
    started.stop()


def seed_dlq(env: QueuePair, count: int = COUNT) -> list[str]:
    run = uuid.uuid4().hex[:8]
    bodies = [
        json.dumps({"job_id": f"{run}-{i:03d}", "customer_id": f"c{i % 3}", "_dlq_reason": "x"})
        for i in range(count)
    ]
    for start in range(0, count, 10):
        env.client.send_message_batch(
            QueueUrl=env.dlq_url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    return bodies


def in_flight(env: QueuePair, url: str) -> int:
    attrs = env.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


def assert_nothing_lost(
    env: QueuePair, seeded: list[str], *, duplicates: bool = False
) -> tuple[Counter[str], Counter[str]]:
    """Every seeded body is on the main queue or the DLQ (read directly, not via the proxy).

    Messages a failed command still holds (in flight until their lease ends) cannot be
    read yet: they count as present, by number, and the bodies that can be read must all
    be seeded ones."""
    held = in_flight(env, env.main_url) + in_flight(env, env.dlq_url)
    main = Counter(m["Body"] for m in env.drain(env.main_url))
    dlq = Counter(m["Body"] for m in env.drain(env.dlq_url))
    found = main + dlq
    assert set(found) <= set(seeded), "bodies that were never seeded appeared"
    if held == 0:
        missing = Counter(seeded) - found
        assert not missing, f"{sum(missing.values())} message(s) lost: {list(missing)[:3]}"
    else:
        assert len(set(found)) + held >= len(seeded), (
            f"{len(seeded) - len(set(found)) - held} message(s) lost ({held} held in flight)"
        )
    if not duplicates:
        assert all(n == 1 for n in found.values()), "a message was duplicated"
    return main, dlq


def assert_finished(result: Any) -> None:
    """With every third call failing no call can fail five times in a row, so botocore's
    standard retries (5 attempts) always get through: the command must finish."""
    assert result.code == 0, (
        f"exit {result.code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


SHARE = {"every": 3, "kinds": RETRYABLE}  # every third call: throttle, throttle, 500, 503...
LOST_SENDS = {"every": 2, "kinds": ["lost-response"], "only": {"SendMessageBatch"}}


# --------------------------------------------------------------------------- a share fails
def test_queue_depth_with_faults(env: QueuePair, proxy: FaultProxy) -> None:
    seeded = seed_dlq(env)
    with proxy.failing(**SHARE):
        result = invoke(["queue", "depth", "-o", "json"], code=None)
    assert_finished(result)
    depth = {row["queue"]: row for row in result.json}
    assert (depth[env.dlq_name]["total"], depth[env.main_name]["total"]) == (COUNT, 0)
    assert sum(proxy.faults.values()) >= 1
    assert_nothing_lost(env, seeded)


def test_dlq_list_with_faults(env: QueuePair, proxy: FaultProxy) -> None:
    seeded = seed_dlq(env)
    with proxy.failing(**SHARE):
        result = invoke(["dlq", "list", "--limit", "100", "-o", "json"], code=None)
    assert_finished(result)
    listed = sorted(m["job_id"] for m in result.json)
    assert listed == sorted(json.loads(b)["job_id"] for b in seeded)  # each exactly once
    assert sum(proxy.faults.values()) >= 3
    _main, dlq = assert_nothing_lost(env, seeded)
    assert sum(dlq.values()) == COUNT  # a peek releases what it read


def test_dlq_export_with_faults(env: QueuePair, proxy: FaultProxy, tmp_path: Path) -> None:
    seeded = seed_dlq(env)
    out = tmp_path / "export.jsonl"
    with proxy.failing(**SHARE):
        result = invoke(
            ["dlq", "export", "--out", str(out), "--lease", "1m", "-o", "json"], code=None
        )
    assert_finished(result)
    assert result.json["exported"] == COUNT
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["body"] for e in exported) == sorted(seeded)  # each exactly once
    assert sum(proxy.faults.values()) >= 3
    _main, dlq = assert_nothing_lost(env, seeded)
    assert sum(dlq.values()) == COUNT  # export is not destructive


@pytest.mark.parametrize(
    "faults", [pytest.param(SHARE, id="throttle+5xx"), pytest.param(LOST_SENDS, id="lost-sends")]
)
def test_dlq_redrive_with_faults(env: QueuePair, proxy: FaultProxy, faults: dict[str, Any]) -> None:
    seeded = seed_dlq(env)
    with proxy.failing(**faults):
        result = invoke(["dlq", "redrive", "--yes", "-o", "json"], code=None)
    assert_finished(result)
    summary = result.json
    assert (summary["moved"], summary["failed"]) == (COUNT, 0), summary
    assert sum(proxy.faults.values()) >= 2
    # A lost send response makes botocore send again: duplicates, never losses.
    main, dlq = assert_nothing_lost(env, seeded, duplicates=faults is LOST_SENDS)
    assert set(main) == set(seeded) and not dlq


@pytest.mark.parametrize(
    "faults", [pytest.param(SHARE, id="throttle+5xx"), pytest.param(LOST_SENDS, id="lost-sends")]
)
def test_jobs_recover_with_faults(
    env: QueuePair, proxy: FaultProxy, job_seed: Any, db: Any, faults: dict[str, Any]
) -> None:
    ids = job_seed.many(COUNT, idle=HOUR)
    with proxy.failing(**faults):
        result = invoke(["jobs", "recover", "--yes", "-o", "json"], code=None)
    assert_finished(result)
    assert (result.json["claimed"], result.json["sent"]) == (COUNT, COUNT)
    assert sum(proxy.faults.values()) >= 1
    sent = Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url))
    assert set(sent) == set(ids)
    if faults is not LOST_SENDS:
        assert all(n == 1 for n in sent.values()), "a job was sent twice"
    states = Counter(r["state"] for r in db.execute("select state from dbops_job_recoveries"))
    assert states == {"sent": COUNT}
    pending = {str(r["id"]) for r in db.execute("select id from jobs where status = 'pending'")}
    assert pending == set(ids)


# --------------------------------------------------------------------------- all calls fail
FAILING_COMMANDS = {
    "queue depth": ["queue", "depth", "-o", "json"],
    "dlq list": ["dlq", "list", "-o", "json"],
    "dlq export": ["dlq", "export", "--out", "{tmp}/export.jsonl"],
    "dlq redrive": ["dlq", "redrive", "--yes", "-o", "json"],
    "jobs recover": ["jobs", "recover", "--yes", "-o", "json"],
}


def test_every_call_failing_exits_5_with_one_line_and_loses_nothing(
    env: QueuePair, proxy: FaultProxy, job_seed: Any, db: Any, tmp_path: Path
) -> None:
    """Each command exhausts botocore's retries (5 attempts, with backoff) and exits 5.

    They run at once, as subprocesses, so their backoff sleeps overlap; nothing reaches
    SQS, so sharing the queues is safe."""
    seeded = seed_dlq(env)
    ids = job_seed.many(5, idle=HOUR)
    proxy.fail(every=1, kinds=RETRYABLE)
    children = {
        name: DbopsProcess([a.replace("{tmp}", str(tmp_path)) for a in args], text=True)
        for name, args in FAILING_COMMANDS.items()
    }
    outcomes = {
        name: (*child.communicate(timeout=120), child.returncode)
        for name, child in children.items()
    }
    proxy.heal()

    for name, (stdout, stderr, code) in outcomes.items():
        assert code == 5, f"dbops {name}: exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        line = one_line_error(stderr)
        assert "Traceback" not in stderr
        # jobs recover prints its partial result when it fails after claiming (and then
        # says to re-run); failing before that (checking the queue), it prints nothing.
        if name != "jobs recover" or "re-run" not in line:
            assert stdout == "", f"dbops {name} printed:\n{stdout}"
    assert proxy.faults and not proxy.faults.keys() - set(RETRYABLE)
    _main, dlq = assert_nothing_lost(env, seeded)
    assert sum(dlq.values()) == COUNT
    # Claimed jobs (if it got that far) wait in the outbox, the others are still stale: a
    # re-run with SQS healthy again sends each job exactly once.
    states = Counter(r["state"] for r in db.execute("select state from dbops_job_recoveries"))
    assert states in (Counter(), Counter({"pending_send": len(ids)})), states
    rerun = invoke(["jobs", "recover", "--yes", "-o", "json"]).json
    assert (rerun["resumed"] + rerun["claimed"], rerun["sent"]) == (len(ids), len(ids))
    assert Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url)) == Counter(ids)
