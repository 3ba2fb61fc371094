"""`dbops` processes for kill and concurrency tests, forked from a warm interpreter.

A test that kills dbops mid-way, or races several dbops processes, needs real processes:
their own connections, their own SQS sessions, a SIGKILL that leaves half-done work
behind. It does not need each of them to start Python and import dbops, boto3, psycopg,
pydantic and Rich again: that was about 0.5 s of CPU per process, and the suite starts
about 150 of them.

So the test run has one fork server (`python -m tests.forkserver SOCKET OWNER_PID`,
started by the first xdist worker that needs it, shared by all): it imports every dbops
module once, then forks a child per request. The child takes the
request's argv, environment, working folder and stdin/stdout/stderr (passed as file
descriptors), and then runs `dbops.cli.main.run()`, exactly what `python -m dbops` runs;
it leaves through the interpreter's normal exit (atexit handlers, non-daemon threads
joined, buffers flushed). The server reaps it and reports its exit status.

`DbopsProcess` is the test side: the part of `subprocess.Popen` these tests use (`pid`,
`poll`, `wait`, `communicate`, `send_signal`, `kill`, `returncode`). Tests about the
interpreter's own start (startup time, what `--help` imports, `python -m dbops` itself)
and tests that need `preexec_fn` keep using `subprocess`.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dbops.sandbox.processes import pid_alive

_HEADER = struct.Struct("!Q")


# --------------------------------------------------------------------------- server side
def _warm_imports() -> None:
    """Import what any dbops command imports, so a child starts with it in memory."""
    import pkgutil

    import dbops
    import dbops.cli.main

    for module in pkgutil.walk_packages(dbops.__path__, "dbops."):
        if module.name.startswith("dbops.sandbox.sqs_server"):
            continue  # imports moto when run, nothing a command needs
        __import__(module.name)  # the adapters bring boto3, psycopg and supabase
    import rich.console  # noqa: F401  (the CLI imports it when it first prints)

    from dbops.adapters.sqs import SqsQueues

    # Parse botocore's endpoint data and the SQS, STS and CloudWatch models here, once:
    # dbops' per-process loader caches them and every child inherits the cache. Without
    # this each child parsed them again (a quarter of a child's CPU: the action log's
    # caller identity builds an STS client). No request is sent.
    warm = SqsQueues(region="us-east-1", endpoint="http://127.0.0.1:9", sandbox=True)
    assert warm.client is not None
    for service in ("sts", "cloudwatch"):
        warm._other_client(service)


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _become_dbops(
    request: dict[str, Any], fds: list[int], close: list[Any], close_fds: list[int]
) -> None:  # pragma: no cover - runs in the forked child
    """In the child: take the request's stdio, folder, environment and argv; drop the
    server's sockets (`close`) and pipe ends (`close_fds`)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for item in close:
        item.close()
    for fd in close_fds:
        os.close(fd)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["argv0"], *request["args"]]


def serve(path: str, owner: int) -> None:
    """Accept requests on the Unix socket PATH while process OWNER (the test run) lives."""
    _warm_imports()

    gc.collect()
    gc.freeze()  # children inherit the heap: keep the collector off its pages
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    running: dict[int, socket.socket] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        if not pid_alive(owner):  # a zombie owner counts as gone
            for leftover in (path, os.path.join(os.path.dirname(path), "lock")):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))
            os._exit(0)
        for key, _ in selector.select(timeout=1):
            if key.fileobj == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            else:
                conn, _ = listener.accept()
                header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
                if len(header) != _HEADER.size or len(fds) != 3:  # a probe (`_answers`)
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                    continue
                (size,) = _HEADER.unpack(header)
                request = json.loads(_read_exact(conn, size))
                pid = os.fork()
                if pid == 0:
                    close = [selector, listener, conn, *running.values()]
                    _become_dbops(request, fds, close, [wake_r, wake_w])
                    from dbops.cli.main import run

                    run()  # raises SystemExit through serve(): the interpreter exits as usual
                    sys.exit(0)
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"{pid}\n".encode())
                running[pid] = conn
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = running.pop(pid)
            with contextlib.suppress(OSError):
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


# --------------------------------------------------------------------------- test side
_server: dict[str, Any] = {}


def _socket_path() -> str:
    """The test run's fork server, shared by its xdist workers: the first that needs it
    starts it (under a lock); it leaves when the run's main process has ended."""
    if "path" in _server:
        return str(_server["path"])
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    owner = os.getppid() if run else os.getpid()  # the xdist controller, or this process
    folder = Path(tempfile.gettempdir()) / f"dbops-fork-{run or os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = str(folder / "s")
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.forkserver", path, str(owner)],
                cwd=Path(__file__).resolve().parent.parent,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                start_new_session=True,  # not in a worker's process group
            )
            assert proc.stdout is not None
            if proc.stdout.readline() != b"ready\n":
                raise RuntimeError("the dbops fork server did not start")
            proc.stdout.close()
    _server["path"] = path
    return path


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class DbopsProcess:
    """`dbops ARGS` in a process forked from the fork server; a `subprocess.Popen` stand-in.

    stdout and stderr are always pipes (read them with `communicate`); stdin is /dev/null.
    """

    def __init__(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, text: bool = False
    ) -> None:
        self.args = ["dbops", *args]
        self.text = text
        self.returncode: int | None = None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdin = os.open(os.devnull, os.O_RDONLY)
        request = {
            "args": list(args),
            "argv0": str(Path(__file__).resolve().parent.parent / "src" / "dbops" / "__main__.py"),
            "env": dict(os.environ if env is None else env),
            "cwd": os.getcwd(),
        }
        payload = json.dumps(request).encode()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(_socket_path())
            socket.send_fds(self._conn, [_HEADER.pack(len(payload))], [stdin, out_w, err_w])
            self._conn.sendall(payload)
        finally:
            for fd in (stdin, out_w, err_w):
                os.close(fd)
        self._pending = b""
        self.pid = int(self._line(None))
        self._out: int | None = out_r
        self._err: int | None = err_r
        self._chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}

    def _line(self, timeout: float | None) -> str:
        """The next line from the server (the pid, then the exit status)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._conn.settimeout(left)
            try:
                chunk = self._conn.recv(64)
            except (TimeoutError, BlockingIOError):
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            if not chunk:
                raise RuntimeError("the dbops fork server went away")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = int(self._line(timeout))
            self._conn.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Read stdout and stderr to their end, then wait; like Popen.communicate."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for fd in (self._out, self._err):
                if fd is not None:
                    selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0)
                for key, _ in selector.select(left):
                    fd = int(key.fd)
                    chunk = os.read(fd, 1 << 16)
                    if chunk:
                        self._chunks[fd].append(chunk)
                    else:
                        selector.unregister(fd)
                        os.close(fd)
                        if fd == self._out:
                            self._out = None
                        else:
                            self._err = None
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        out, err = (b"".join(chunks) for chunks in self._chunks.values())
        if self.text:
            return _text(out), _text(err)
        return out, err

    def __del__(self) -> None:
        for fd in (self._out, self._err):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _text(data: bytes) -> str:
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


def run_dbops(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Like `subprocess.run([python, -m, dbops, *args], capture_output=True, text=True)`."""
    proc = DbopsProcess(args, env=env, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.wait(), out, err)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
