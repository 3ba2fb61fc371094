"""A small fault-injecting HTTP proxy for SQS (test-only).

Sits between dbops (AWS_ENDPOINT_URL_SQS=proxy.url) and the session's SQS server (moto
or LocalStack) and forwards each request with http.client, except those it is told to
fail. Faults are deterministic: `every` = N fails every N-th request (N=1: all of them),
cycling through `kinds`; `only` limits them to some actions (e.g. {"SendMessageBatch"}).

Fault kinds, answered in the protocol the request used: boto3 speaks SQS's JSON protocol
(`Content-Type: application/x-amz-json-1.0`, `X-Amz-Target: AmazonSQS.<Action>`), whose
errors are `{"__type": ..., "message": ...}` plus the `x-amzn-query-error` header that
maps them to the legacy Query codes; a Query request (form-encoded `Action=...`) gets the
XML `ErrorResponse` instead.

- "throttle":        400 ThrottlingException (Query code `Throttling`), as the AWS front
                     end answers when over a rate limit
- "request-throttled": 400 `RequestThrottled`, SQS's own modelled throttling error
- "500", "503":      InternalFailure / ServiceUnavailable
- "denied":          403 InvalidClientTokenId (not retryable: a bad AWS key)
- "drop":            the connection is closed without an answer
- "lost-response":   the request IS forwarded (SQS acts on it) but the answer is a 500,
                     as when a response is lost on the way back

Everything except "lost-response" fails before SQS sees the request. Bounded: it only
listens on 127.0.0.1, forwards with a timeout, and serves until `stop()`.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}

# kind -> (status, JSON __type, Query code, sender/receiver fault)
_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "throttle": (400, "com.amazon.coral.availability#ThrottlingException", "Throttling", "Sender"),
    "request-throttled": (400, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled", "Sender"),
    "500": (500, "com.amazon.coral.service#InternalFailure", "InternalFailure", "Receiver"),
    "503": (503, "com.amazon.coral.service#ServiceUnavailable", "ServiceUnavailable", "Receiver"),
    "denied": (
        403,
        "com.amazon.coral.service#InvalidClientTokenId",
        "InvalidClientTokenId",
        "Sender",
    ),
    "lost-response": (
        500,
        "com.amazon.coral.service#InternalFailure",
        "InternalFailure",
        "Receiver",
    ),
}
KINDS = (*_ERRORS, "drop")
RETRYABLE = ("throttle", "request-throttled", "500", "503")


class FaultProxy:
    def __init__(self, upstream: str, *, timeout: float = 30) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._every = 0
        self._only: set[str] | None = None
        self._kinds: Iterator[str] = itertools.cycle(["500"])
        self._seen = 0
        self.requests: Counter[str] = Counter()  # action -> requests received
        self.faults: Counter[str] = Counter()  # kind -> faults injected
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = _is_query(self.headers.get("Content-Type", ""))
                action = _action(self.headers.get("X-Amz-Target", ""), body, query=query)
                kind = proxy._decide(action)
                if kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if kind is not None and kind != "lost-response":
                    self._reply(*_error(kind, query=query))
                    return
                status, headers, answer = proxy._forward(
                    self.command, self.path, self.headers, body
                )
                if kind == "lost-response":
                    self._reply(*_error(kind, query=query))
                    return
                self._reply(status, headers, answer)

            do_GET = do_POST  # the Query protocol also allows GET

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
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="sqs-fault-proxy", daemon=True
        )

    # -- control ---------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(
        self, *, every: int, kinds: Iterable[str] = RETRYABLE, only: Iterable[str] | None = None
    ) -> None:
        """Fail every `every`-th request (1 = all), cycling through `kinds`."""
        chosen = list(kinds)
        assert every >= 1 and chosen and set(chosen) <= set(KINDS), (every, chosen)
        with self._lock:
            self._every, self._kinds, self._seen = every, itertools.cycle(chosen), 0
            self._only = set(only) if only is not None else None

    def heal(self) -> None:
        with self._lock:
            self._every = 0

    @contextmanager
    def failing(self, **kwargs: Any) -> Iterator[FaultProxy]:
        self.fail(**kwargs)
        try:
            yield self
        finally:
            self.heal()

    # -- internals -------------------------------------------------------------------
    def _decide(self, action: str) -> str | None:
        with self._lock:
            self.requests[action] += 1
            if not self._every or (self._only is not None and action not in self._only):
                return None
            self._seen += 1
            if self._seen % self._every:
                return None
            kind = next(self._kinds)
            self.faults[kind] += 1
            return kind

    def _forward(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=self.timeout)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP}
            sent["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            answer = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP}
            return response.status, kept, answer
        finally:
            conn.close()


def _is_query(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _action(target: str, body: bytes, *, query: bool) -> str:
    if target:
        return target.rsplit(".", 1)[-1]
    if query:
        values = parse_qs(body.decode("utf-8", "replace")).get("Action")
        return values[0] if values else "?"
    return "?"


def _error(kind: str, *, query: bool) -> tuple[int, dict[str, str], bytes]:
    status, type_, code, fault = _ERRORS[kind]
    message = f"injected by the test proxy ({kind})"
    request_id = str(uuid.uuid4())
    if query:
        xml = (
            '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/'
            f'2012-11-05/"><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}'
            f"</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, xml.encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": request_id,
        "x-amzn-query-error": f"{code};{fault}",
    }
    return status, headers, json.dumps({"__type": type_, "message": message}).encode()
