"""SQS failing under `dbops jobs recover`: claimed jobs stay in the outbox, a re-run sends them.

Faults come from a real HTTP proxy in front of the SQS endpoint (moto or LocalStack):
it can go down after N SendMessageBatch calls (connections dropped, as when SQS or the
network is unreachable), or make SQS refuse the batch entries whose body contains a
marker (per-entry `Failed` results, as SQS reports invalid messages).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.services import jobs
from tests.helpers import invoke, one_line_error

pytestmark = pytest.mark.reliability

HOUR = 3600
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class SqsFaultProxy:
    """Forwards every request to `upstream`, with injectable faults."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.down_after_batches: int | None = None
        self.reject_marker: str | None = None
        self.batches = 0
        self.down = False
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle + delayed ACK
                # add ~40 ms to every request
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                rejected: list[dict[str, Any]] = []
                with proxy._lock:
                    if target.endswith(".SendMessageBatch"):
                        if (
                            proxy.down_after_batches is not None
                            and proxy.batches >= proxy.down_after_batches
                        ):
                            proxy.down = True
                        proxy.batches += 1
                    down = proxy.down
                if down:  # unreachable: drop the connection without an answer
                    self.close_connection = True
                    self.connection.close()
                    return
                if target.endswith(".SendMessageBatch") and proxy.reject_marker:
                    payload = json.loads(body)
                    keep = []
                    for entry in payload.get("Entries", []):
                        if proxy.reject_marker in entry.get("MessageBody", ""):
                            rejected.append(
                                {
                                    "Id": entry["Id"],
                                    "SenderFault": True,
                                    "Code": "InvalidMessageContents",
                                    "Message": "refused by the test proxy",
                                }
                            )
                        else:
                            keep.append(entry)
                    if not keep:
                        self._reply(
                            200,
                            {"Content-Type": "application/x-amz-json-1.0"},
                            json.dumps({"Successful": [], "Failed": rejected}).encode(),
                        )
                        return
                    payload["Entries"] = keep
                    body = json.dumps(payload).encode()
                status, headers, answer = self._forward(body)
                if rejected and status == 200:
                    data = json.loads(answer)
                    data["Failed"] = list(data.get("Failed", [])) + rejected
                    answer = json.dumps(data).encode()
                self._reply(status, headers, answer)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    headers["Content-Length"] = str(len(body))
                    conn.request("POST", self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    answer = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP}
                    return response.status, kept, answer
                finally:
                    conn.close()

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SqsFaultProxy:
        self._thread.start()
        return self

    def heal(self) -> None:
        with self._lock:
            self.down, self.down_after_batches, self.reject_marker = False, None, None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(sqs_endpoint: str) -> Iterator[SqsFaultProxy]:
    started = SqsFaultProxy(sqs_endpoint).start()
    yield started
    started.stop()


def per_job(env: Any) -> Counter[str]:
    return Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url))


def test_sqs_down_mid_run_keeps_claimed_jobs_in_the_outbox_and_rerun_sends_them(
    env, job_seed, db, database_url, proxy
):
    ids = job_seed.many(35, idle=HOUR)
    store = PostgresStore(database_url)
    flaky = SqsQueues(region="us-east-1", endpoint=proxy.url, max_attempts=1)
    proxy.down_after_batches = 2

    with pytest.raises(jobs.RecoveryIncomplete) as failure:
        jobs.recover(
            store=store,
            queues=flaky,
            queue_url=env.main_url,
            operator="alice",
            older_than_seconds=600,
        )

    assert int(failure.value.exit_code) == 5
    assert "re-run `dbops jobs recover`" in failure.value.one_line()
    partial = failure.value.result
    assert isinstance(partial, jobs.RecoverResult)
    assert (partial.claimed, partial.sent) == (35, 20)
    rows = db.execute("select state, lease_owner from dbops_job_recoveries order by id").fetchall()
    assert Counter(r["state"] for r in rows) == {"sent": 20, "pending_send": 15}
    assert {r["lease_owner"] for r in rows} == {None}  # released: a re-run takes them at once

    proxy.heal()
    again = jobs.recover(
        store=store, queues=flaky, queue_url=env.main_url, operator="alice", older_than_seconds=600
    )

    assert (again.resumed, again.claimed, again.sent, again.unsent_remaining) == (15, 0, 15, 0)
    assert per_job(env) == Counter(ids)
    store.close()


def test_cli_exits_5_with_one_line_telling_to_rerun(env, job_seed, monkeypatch, proxy):
    ids = job_seed.many(25, idle=HOUR)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
    proxy.down_after_batches = 1

    result = invoke(["jobs", "recover", "--yes", "-o", "json"], code=5)

    line = one_line_error(result.stderr)
    assert "re-run `dbops jobs recover`" in line and "15 re-queued job(s) wait" in line
    (entry,) = [e for e in invoke(["log", "-o", "json"]).json if e["command"] == "jobs recover"]
    assert entry["outcome"] == "error" and entry["counts"]["sent"] == 10

    proxy.heal()
    rerun = invoke(["jobs", "recover", "--yes", "-o", "json"]).json
    assert (rerun["resumed"], rerun["sent"], rerun["failed_sends"]) == (15, 15, 0)
    assert per_job(env) == Counter(ids)


def test_entries_sqs_refuses_stay_unsent_and_are_reported(env, job_seed, db, monkeypatch, proxy):
    good = job_seed.many(10, idle=HOUR)
    bad = job_seed.many(2, idle=HOUR, customer_prefix="reject-me-")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
    proxy.reject_marker = "reject-me"

    result = invoke(["jobs", "recover", "--yes", "-o", "json"], code=5)

    summary = result.json
    assert (summary["claimed"], summary["sent"], summary["failed_sends"]) == (12, 10, 2)
    assert summary["unsent_remaining"] == 2
    refused = [j for j in summary["jobs"] if not j["sent"]]
    assert sorted(j["job_id"] for j in refused) == sorted(bad)
    assert all("InvalidMessageContents" in j["error"] for j in refused)
    assert "re-run `dbops jobs recover`" in one_line_error(result.stderr)
    rows = db.execute(
        "select last_error from dbops_job_recoveries where state = 'pending_send'"
    ).fetchall()
    assert len(rows) == 2 and all("InvalidMessageContents" in r["last_error"] for r in rows)

    proxy.heal()
    rerun = invoke(["jobs", "recover", "--yes", "-o", "json"]).json
    assert (rerun["resumed"], rerun["sent"], rerun["failed_sends"]) == (2, 2, 0)
    assert per_job(env) == Counter(good + bad)
