"""The sandbox's and the tests' SQS server: moto's own, made cheaper per request with the
same answers, and one race closed.

`python -m dbops.sandbox.sqs_server -H HOST -p PORT` is moto's `moto_server` command line
(the sandbox starts it; werkzeug's request log goes to the sandbox's moto.log as before);
`ThreadedSqsServer` is the same server on a thread, for tests/conftest.py (`sqs_endpoint`)
and benchmarks/bench_moto.py, which measures it against moto's `ThreadedMotoServer`.

Inside moto's SQS (`speed_up_moto_sqs`), each replacement returns what moto's function
returns, and tests/sandbox/test_sqs_server.py compares them with moto's own:
- the clock: moto 5 reads it through a datetime round trip (`unix_time_millis()`: utcnow,
  an epoch datetime, a timedelta) for every message on every visibility check; the
  replacement returns time.time() when given no argument (a ReceiveMessage at a depth of
  500 cost ~0.35 s of CPU before, ~0.1 s after);
- attribute names converted to snake_case character by character on every request: the
  same function, memoised (it is pure);
- which methods a response class has (`inspect.getmembers` on every request): memoised per
  class; the classes do not change while the server runs;
- GetQueueAttributes built every attribute of the queue (counting its messages) three
  times per name asked for; now once per call. And ReceiveMessage checked each message's
  retention period through that same call; now it reads `MessageRetentionPeriod` itself.
  Same values, same validation and errors; only the count of passes over the messages
  changes;
- receipt handles and request ids: the same characters from the same (seedable) random
  source, drawn with one `choices()` call instead of one `choice()` per character.

The race: moto's `Queue.delete_message` rebuilds the queue's message list from a copy
without the lock `add_message` takes, and its server answers requests on threads. Two
DeleteMessageBatch calls at once (dbops deletes in parallel batches) could each rebuild
from the same copy, so one deletion came undone; a message sent meanwhile could vanish.
Real SQS does neither; the wrapper takes the queue's lock for the rebuild.

In the HTTP server (`SqsDispatcher`, `SqsRequestHandler`):
- moto's dispatcher lists its own package directory and stats every entry, then tries
  every service's URL pattern, on every request, to find the backend for the request's
  host (for SQS: `sqs.<region>.amazonaws.com`, taken from the signature). The answer
  depends only on the host and the installed moto, so it is remembered per host (a host
  with no backend is not remembered);
- werkzeug's server answers `Connection: close` to every request (its http.server base
  cannot tell where an unread body ends), so botocore opened a new connection, and the
  server a new thread, for every call. The handler keeps the connection when that is safe:
  HTTP/1.1, the client did not ask to close, the body's length is given by Content-Length
  (no chunked body, no `Expect`), and the answer's Content-Length matches its body (or it
  has none: HEAD, 1xx, 204, 304). It reads what the application left of the body before
  the next request. Anything else goes through werkzeug's own `run_wsgi`, unchanged;
  after an application error the answer is werkzeug's 500, logged the same way, and the
  connection is closed as before;
- the status line, headers and body go out in one write, not two (http.server writes the
  headers, then werkzeug the body). The whole answer is collected first: moto's SQS
  answers are not streamed (a long poll waits inside the application, before any byte is
  written). The bytes are werkzeug's (the same Server, Date, moto's headers, chunked
  framing when there is no Content-Length) but for `Connection: close`, which is sent only
  when the connection is then closed;
- `log_requests=False` (the tests' server) drops werkzeug's INFO line per request: under
  pytest every line was captured into the test's report (thousands in a failure's output).
  Errors are still logged. The sandbox keeps the line (moto.log).
tests/sandbox/test_sqs_server_http.py checks the answers against moto's own server's.
"""

from __future__ import annotations

import functools
import io
import string
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.exceptions import ClientDisconnected, InternalServerError
from werkzeug.serving import BaseWSGIServer, connection_dropped_errors, make_server
from werkzeug.wsgi import LimitedStream


def speed_up_moto_sqs() -> None:
    """Install the replacements and the lock in moto's SQS modules (idempotent)."""
    import moto.core.responses as responses
    import moto.core.utils as utils
    import moto.sqs.models as models
    from moto.moto_api._internal import mock_random

    if getattr(models, "_dbops_fast", False):
        return
    slow_time, slow_millis = utils.unix_time, utils.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else slow_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else slow_millis(dt)

    snake = functools.lru_cache(maxsize=4096)(utils.camelcase_to_underscores)
    unlocked_delete = models.Queue.delete_message

    def delete_message(queue: Any, receipt_handle: str) -> None:
        with queue._messages_lock:
            unlocked_delete(queue, receipt_handle)

    @functools.cache
    def method_names(clazz: type) -> frozenset[str]:
        return frozenset(utils.method_names_from_class(clazz))

    def receipt_handle() -> str:
        # moto's: "".join(random.choice(ascii_lowercase) for _ in range(185)), same source
        return "".join(mock_random.choices(string.ascii_lowercase, k=185))

    backend = models.SQSBackend
    models._dbops_slow = {  # type: ignore[attr-defined]  # moto's own, for tests/sandbox
        "get_queue_attributes": backend.get_queue_attributes,
        "is_message_valid_based_on_retention_period": (
            backend.is_message_valid_based_on_retention_period
        ),
        "get_random_string": type(mock_random).get_random_string,
    }
    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis
    models.camelcase_to_underscores = snake
    responses.camelcase_to_underscores = snake
    responses.method_names_from_class = method_names  # type: ignore[assignment]
    models.generate_receipt_handle = receipt_handle
    setattr(type(mock_random), "get_random_string", _random_string)  # noqa: B010
    attributes = _attributes_once(backend.get_queue_attributes, models.InvalidAttributeName)
    setattr(backend, "get_queue_attributes", attributes)  # noqa: B010
    setattr(backend, "is_message_valid_based_on_retention_period", _retained)  # noqa: B010
    setattr(models.Queue, "delete_message", delete_message)  # noqa: B010 (typed as a method)
    models._dbops_fast = True  # type: ignore[attr-defined]


def _random_string(
    rng: Any, length: int = 20, include_digits: bool = True, lower_case: bool = False
) -> str:
    """moto's `MotoRandom.get_random_string`, with one choices() call instead of `length`
    choice() calls."""
    pool = string.ascii_letters + (string.digits if include_digits else "")
    text = "".join(rng.choices(pool, k=length))
    return text.lower() if lower_case else text


def _attributes_once(slow: Callable[..., dict[str, Any]], invalid_name: type[Exception]) -> Any:
    """moto's `SQSBackend.get_queue_attributes`, reading `queue.attributes` (which counts the
    messages) once, not three times per name; "All" and no names already read it once."""

    def get_queue_attributes(
        backend: Any, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        if not attribute_names or "All" in attribute_names:
            return slow(backend, queue_name, attribute_names)
        queue = backend.get_queue(queue_name)
        valid = {"All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES}
        invalid = next((name for name in attribute_names if name not in valid), None)
        if invalid is not None:
            raise invalid_name(invalid)
        current = queue.attributes
        return {
            name: current[name]
            for name in attribute_names
            if name in current and current[name] is not None
        }

    return get_queue_attributes


def _retained(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's `is_message_valid_based_on_retention_period`, which read the period through
    get_queue_attributes (every attribute computed, the messages counted three times) for
    each message received."""
    retention = backend.get_queue(queue_name).message_retention_period
    return bool(retention + message.sent_timestamp / 1000 > time.time())


class SqsDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves a host (see the module docstring)."""

    def __init__(self, create_app: Callable[[Any], Any] = create_backend_app) -> None:
        super().__init__(create_app)
        self._backends: dict[str, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # Called under self.lock (get_application): no other lock needed.
        if host is None:
            return None
        backend = self._backends.get(host)
        if backend is None:
            backend = super().get_backend_for_host(host)
            if backend:  # not found: not remembered, moto prints its hint every time
                self._backends[host] = backend
        return backend


class SqsRequestHandler(MotoRequestHandler):
    """moto's request handler, keeping connections open and writing each response in one
    piece when that is safe; otherwise werkzeug's own `run_wsgi` (see the module docstring)."""

    log_requests = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.log_requests:
            super().log_request(code, size)

    def run_wsgi(self) -> None:
        length = self._body_length()
        if length is None:
            super().run_wsgi()
            return
        self.environ = environ = self.make_environ()
        body = LimitedStream(self.rfile, length)  # type: ignore[arg-type]
        environ["wsgi.input"] = body
        try:
            status, headers, chunks = self._call(environ)
        except connection_dropped_errors as error:
            self.connection_dropped(error, environ)
            self.close_connection = True
            return
        try:
            body.exhaust()  # what the application left unread: the next request follows it
        except ClientDisconnected:
            self.close_connection = True
            return
        try:
            self._send(status, headers, chunks, environ["REQUEST_METHOD"])
        except connection_dropped_errors as error:
            self.connection_dropped(error, environ)
            self.close_connection = True

    def _body_length(self) -> int | None:
        """The request body's length when this request can share its connection: HTTP/1.1
        asked to keep it, no chunked body, no 100-continue. None: werkzeug's own way."""
        if self.close_connection or self.protocol_version < "HTTP/1.1":
            return None
        if "Transfer-Encoding" in self.headers or "Expect" in self.headers:
            return None
        declared = self.headers.get_all("Content-Length") or ["0"]
        value = declared[0].strip()
        return int(value) if len(declared) == 1 and value.isascii() and value.isdigit() else None

    def _call(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        """Run the application to the end and collect its answer, as werkzeug's `execute`
        does, with an error turned into werkzeug's 500 and logged the same way."""
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info:
                exc_info = None  # nothing was sent yet: the new status replaces the old
            elif started:
                raise AssertionError("Headers already set")
            started[:] = [status, headers]
            return chunks.append

        try:
            answer: Iterable[bytes] = self.server.app(environ, start_response)
            try:
                for data in answer:
                    assert isinstance(data, bytes), "applications must write bytes"
                    chunks.append(data)
            finally:
                if hasattr(answer, "close"):
                    answer.close()
        except connection_dropped_errors:
            raise
        except Exception as error:
            if self.server.passthrough_errors:
                raise
            from werkzeug.debug.tbtools import DebugTraceback

            started.clear()
            chunks.clear()
            fallback = InternalServerError()(environ, start_response)
            chunks.extend(fallback)
            self.close_connection = True  # werkzeug closes after an error too
            msg = DebugTraceback(error).render_traceback_text()
            self.server.log("error", f"Error on request:\n{msg}")
        if not started:
            raise AssertionError("write() before start_response")
        return started[0], started[1], chunks

    def _send(
        self, status: str, headers: list[tuple[str, str]], chunks: list[bytes], method: str
    ) -> None:
        """Status line, headers and body in one write; the headers are werkzeug's but for
        `Connection: close`, sent only when the connection cannot be kept."""
        try:
            code_str, msg = status.split(None, 1)
        except ValueError:
            code_str, msg = status, ""
        code = int(code_str)
        content = b"".join(chunks)
        declared = [v for k, v in headers if k.lower() == "content-length"]
        no_body = method == "HEAD" or 100 <= code < 200 or code in {204, 304}
        if no_body:
            framed = not content  # no body, whatever Content-Length says (HEAD)
        else:
            framed = len(declared) == 1 and declared[0].strip() == str(len(content))
        out = io.BytesIO()
        wire, self.wfile = self.wfile, out
        try:
            self.send_response(code, msg)
            for key, value in headers:
                self.send_header(key, value)
            chunked = not declared and not no_body
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            if not framed or self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if chunked:
                if content:
                    out.write(b"%x\r\n%s\r\n" % (len(content), content))
                out.write(b"0\r\n\r\n")
            else:
                out.write(content)
        finally:
            self.wfile = wire
        wire.write(out.getvalue())
        wire.flush()


class ThreadedSqsServer:
    """moto's `ThreadedMotoServer`, with `SqsDispatcher` and `SqsRequestHandler`; for tests
    and benchmarks (`log_requests=False`: no werkzeug line per request)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_requests: bool = False):
        self._host, self._port = host, port
        handler = type(
            "QuietSqsRequestHandler", (SqsRequestHandler,), {"log_requests": log_requests}
        )
        self._handler = handler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        speed_up_moto_sqs()
        self._server = make_server(
            self._host, self._port, SqsDispatcher(), threaded=True, request_handler=self._handler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "call start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()


def main(argv: list[str] | None = None) -> None:
    """moto's own `moto_server` command line, serving with the classes above (and werkzeug's
    request log kept: the sandbox's moto.log)."""
    import moto.server as moto_server

    speed_up_moto_sqs()
    moto_server.DomainDispatcherApplication = SqsDispatcher  # type: ignore[misc]
    moto_server.MotoRequestHandler = SqsRequestHandler  # type: ignore[misc]
    moto_server.main(argv)


if __name__ == "__main__":
    main()
