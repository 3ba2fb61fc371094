"""The redrive journal: what a copy redrive holds in the DLQ, so that a re-run can settle it.

A copy redrive receives messages under a long visibility lease (5 minutes), sends them, and
only then deletes them. A process killed in between leaves some messages invisible until
their lease ends, and some sent but not yet deleted (which a plain re-run would send again).
The journal records both, so that the next redrive of the same DLQ first *settles* them:
it deletes from the DLQ what was already sent (no resend) and releases the rest
(visibility 0) so that they are redriven at once.

One file per source queue: ``<dir>/<sha256 of the queue url>.jsonl`` (mode 0600, in a
folder of mode 0700), JSON lines, appended with one ``write`` and an ``fsync`` each::

    {"v": 1, "source": URL, "target": URL, "pid": N, "started": ISO-8601}   (first line)
    {"held": [[message_id, receipt_handle], ...]}   received: this run holds them
    {"sent": [[message_id, receipt_handle], ...]}   sent to the target, not yet deleted
    {"done": [receipt_handle, ...]}                 deleted or released: nothing to settle
    {"sent_unconfirmed": [message_id, ...]}         sent earlier; the receipt handle expired
    {"copy_done": [message_id, ...]}                such a message was found and deleted

A line may carry several keys; they are applied in the order held, sent, done,
sent_unconfirmed, copy_done. ``held`` and ``sent`` lines are fsynced before the redrive
goes on. ``done`` lines are written at once (a killed process loses nothing it wrote) but
fsynced with the next append: only a machine crash can lose one, and settling a handle
that was in fact already deleted or released is harmless (the call fails or does
nothing). A truncated last line (a kill in the middle of a write) is ignored. The file is
rewritten compactly (temporary file, fsync, rename) when it grows, and removed when a run
ends with nothing left to settle.

A run holds an exclusive ``flock`` on ``<sha>.lock`` for its whole duration: a second
redrive of the same DLQ is refused while the first runs (it would release the first one's
messages and send them twice). The kernel drops the lock when a process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dbops.errors import ConfigError, RefusedError
from dbops.ports import BatchResult, Queues
from dbops.services.redact import load_json

VERSION = 1
COMPACT_MIN_BYTES = 1 << 20  # rewrite when appends since the last rewrite exceed this ...
CHUNK = 100  # (message id, handle) pairs per line in a rewritten file


class SettleReport(BaseModel):
    """`settled` in `dbops dlq redrive -o json`: what this run settled from the journal of
    an earlier redrive of the same DLQ that did not finish (killed, or lost its network).

    - `deleted_already_sent`: messages the earlier run had sent to the target but not yet
      deleted from the DLQ; deleted now, not sent again.
    - `released`: messages the earlier run held invisible; made visible at once
      (ChangeMessageVisibility 0) and redriven by this run.
    - `expired`: receipt handles that were no longer valid (the lease ran out, or the
      message was received again since). Not an error: a held message is visible again
      anyway; a sent one is remembered by message id and deleted, not sent again, when
      this run finds it (`sent_copies_deleted`).
    """

    journal: str
    earlier_run_started: str | None = None
    deleted_already_sent: int = 0
    released: int = 0
    expired: int = 0
    sent_copies_deleted: int = 0


class JournalPending(BaseModel):
    """What a redrive would settle first (shown in the preview)."""

    journal: str
    sent: int
    held: int
    sent_unconfirmed: int
    earlier_run_started: str | None = None
    running_pid: int | None = None  # another redrive of this DLQ holds the lock


@dataclass
class _State:
    held: dict[str, str] = field(default_factory=dict)  # receipt handle -> message id
    sent: dict[str, str] = field(default_factory=dict)  # receipt handle -> message id
    unconfirmed: set[str] = field(default_factory=set)  # message ids
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.held and not self.sent and not self.unconfirmed

    def apply(self, record: Mapping[str, Any]) -> None:
        for mid, handle in _pairs(record.get("held")):
            if handle not in self.sent:
                self.held[handle] = mid
        for mid, handle in _pairs(record.get("sent")):
            self.held.pop(handle, None)
            self.sent[handle] = mid
        for handle in _strings(record.get("done")):
            self.held.pop(handle, None)
            self.sent.pop(handle, None)
        self.unconfirmed.update(_strings(record.get("sent_unconfirmed")))
        self.unconfirmed.difference_update(_strings(record.get("copy_done")))


def _pairs(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return []
    return [
        (str(item[0]), str(item[1]))
        for item in value
        if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
    ]


def _strings(value: Any) -> list[str]:
    return [x for x in value if isinstance(x, str)] if isinstance(value, list) else []


def default_directory() -> Path:
    """Where `dbops dlq redrive` keeps its journals: `<data dir>/redrive-journal`."""
    from dbops.config_files import data_dir

    return data_dir() / "redrive-journal"


def journal_key(queue_url: str) -> str:
    return hashlib.sha256(queue_url.rstrip("/").encode()).hexdigest()


def journal_path(directory: Path, queue_url: str) -> Path:
    return directory / f"{journal_key(queue_url)}.jsonl"


def _read(path: Path) -> _State:
    state = _State()
    try:
        with path.open("r", encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream):
                record = load_json(line)  # NOT_JSON: a line cut short by a kill
                if not isinstance(record, dict):
                    continue
                if number == 0 and "v" in record:
                    state.header = record
                    continue
                state.apply(record)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"cannot read the redrive journal {path}: {exc.strerror}",
            hint="fix its permissions (or remove it: a re-run then waits for the lease)",
        ) from None
    return state


def _lock_holder(lock_path: Path) -> int | None:
    """The pid holding the lock, or None when nobody does (never blocks)."""
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def pending(directory: Path, queue_url: str) -> JournalPending | None:
    """What the next redrive of `queue_url` would settle first; None when nothing (or when
    the journal cannot be read: the run itself then says why)."""
    path = journal_path(directory, queue_url)
    running = _lock_holder(path.with_suffix(".lock"))
    try:
        state = _read(path)
    except ConfigError:
        return None
    if state.empty and running is None:
        return None
    return JournalPending(
        journal=str(path),
        sent=len(state.sent),
        held=len(state.held),
        sent_unconfirmed=len(state.unconfirmed),
        earlier_run_started=state.header.get("started"),
        running_pid=running,
    )


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class RedriveJournal:
    """The open journal of one running redrive (thread-safe). Use `open_journal`."""

    def __init__(self, directory: Path, source_url: str, target_url: str) -> None:
        self.directory = directory
        self.source_url = source_url
        self.target_url = target_url
        self.path = journal_path(directory, source_url)
        self.report: SettleReport | None = None
        self._lock = threading.Lock()
        self._state = _State()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._appended = 0  # bytes appended since the last rewrite
        self._base = 0  # bytes of the last rewrite
        self._active = False  # settled and started: this run's state is the file's

    # -- lifecycle -------------------------------------------------------------------
    def _acquire(self) -> None:
        import fcntl

        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                self.directory.chmod(0o700)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the redrive journal in {self.directory}: {exc.strerror}",
                hint="set DBOPS_DATA_DIR to a writable folder",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {text})" if text.isdigit() else ""
            name = self.source_url.rstrip("/").rsplit("/", 1)[-1]
            raise RefusedError(
                f"another dbops redrive of {name} is running{who}",
                hint="wait for it to finish: two redrives of one DLQ could send messages twice",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self, *, drained: bool) -> None:
        """Flush; remove the file when nothing is left to settle, else keep it compact.
        Message ids sent earlier whose handle expired are forgotten only after a run that
        drained the DLQ without meeting them (they are gone)."""
        with self._lock:
            try:
                if not self._active:
                    return  # settling failed: the earlier journal stays as it was
                if drained:
                    self._state.unconfirmed.clear()
                if self._state.empty:
                    if self._fd is not None:
                        os.close(self._fd)
                        self._fd = None
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    _fsync_dir(self.directory)
                else:
                    self._rewrite()
            except OSError:
                pass  # the journal stays as it was: a re-run settles it all again
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # drops the flock
                    self._lock_fd = None

    def _rewrite(self) -> None:
        """The current state as a fresh file (temporary file, fsync, rename, fsync dir)."""
        lines = [
            json.dumps(
                {
                    "v": VERSION,
                    "source": self.source_url,
                    "target": self.target_url,
                    "pid": os.getpid(),
                    "started": self._state.header.get("started")
                    or datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        ]
        held = [[mid, h] for h, mid in self._state.held.items()]
        sent = [[mid, h] for h, mid in self._state.sent.items()]
        lines += [json.dumps({"held": list(c)}) for c in _chunks(held, CHUNK)]
        lines += [json.dumps({"sent": list(c)}) for c in _chunks(sent, CHUNK)]
        unconfirmed = sorted(self._state.unconfirmed)
        lines += [json.dumps({"sent_unconfirmed": list(c)}) for c in _chunks(unconfirmed, 1000)]
        data = ("\n".join(lines) + "\n").encode()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._base, self._appended = len(data), 0

    def _append(self, record: dict[str, Any], *, sync: bool = True) -> None:
        """One line, one write, and (unless `sync` is false) one fsync; caller holds the lock."""
        data = (json.dumps(record) + "\n").encode()
        try:
            if self._fd is None:
                raise OSError(0, "journal is closed")
            _write_all(self._fd, data)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the redrive journal {self.path}: {exc.strerror}",
                hint="free disk space or set DBOPS_DATA_DIR; nothing was lost "
                "(unsent messages stay in the DLQ)",
            ) from None
        self._appended += len(data)
        if self._appended > max(COMPACT_MIN_BYTES, 2 * self._base):
            with contextlib.suppress(OSError):
                self._rewrite()

    # -- settling --------------------------------------------------------------------
    def settle(self, queues: Queues, *, workers: int = 1) -> SettleReport | None:
        """Settle what an earlier run left: delete what it sent, release what it held.
        Then start this run's journal. None when there was nothing to settle."""
        earlier = _read(self.path)
        report: SettleReport | None = None
        if not earlier.empty:
            report = SettleReport(
                journal=str(self.path), earlier_run_started=earlier.header.get("started")
            )
            sent = list(earlier.sent.items())
            held = list(earlier.held.items())

            def delete(chunk: Sequence[tuple[str, str]]) -> tuple[int, list[str]]:
                handles = {str(i): h for i, (h, _mid) in enumerate(chunk)}
                result = queues.delete_batch(self.source_url, handles)
                lost = [chunk[int(i)][1] for i in handles if i not in result.successful]
                return len(result.successful), lost

            def release(chunk: Sequence[tuple[str, str]]) -> tuple[int, list[str]]:
                handles = {str(i): h for i, (h, _mid) in enumerate(chunk)}
                result: BatchResult = queues.change_visibility_batch(self.source_url, handles, 0)
                return len(result.successful), [
                    chunk[int(i)][1] for i in handles if i not in result.successful
                ]

            for ok, expired_ids in _map(delete, _chunks(sent, 10), workers):
                report.deleted_already_sent += ok
                report.expired += len(expired_ids)
                earlier.unconfirmed.update(expired_ids)  # delete them when met, never resend
            for ok, expired_ids in _map(release, _chunks(held, 10), workers):
                report.released += ok
                report.expired += len(expired_ids)
            earlier.sent.clear()
            earlier.held.clear()
        self._state = _State(
            unconfirmed=earlier.unconfirmed,
            header={"started": datetime.now(UTC).isoformat(timespec="seconds")},
        )
        with self._lock:
            try:
                self._rewrite()
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the redrive journal {self.path}: {exc.strerror}",
                    hint="set DBOPS_DATA_DIR to a writable folder",
                ) from None
            self._active = True
        self.report = report
        return report

    # -- recording (called by the copy engine) ---------------------------------------
    def received(self, pairs: Iterable[tuple[str, str]]) -> None:
        items = [[mid, h] for mid, h in pairs]
        if not items:
            return
        with self._lock:
            for mid, h in items:
                self._state.held[h] = mid
            self._append({"held": items})

    def sent(self, pairs: Iterable[tuple[str, str]]) -> None:
        items = [[mid, h] for mid, h in pairs]
        if not items:
            return
        with self._lock:
            for mid, h in items:
                self._state.held.pop(h, None)
                self._state.sent[h] = mid
            self._append({"sent": items})

    def finished(self, handles: Iterable[str], *, sent_too: bool = True) -> None:
        """Deleted (or, with `sent_too=False`, released): nothing left to settle. A release
        never settles a sent message: it must be deleted."""
        with self._lock:
            done = [
                h
                for h in handles
                if self._state.held.pop(h, None) is not None
                or (sent_too and self._state.sent.pop(h, None) is not None)
            ]
            if done:
                # Optional for correctness (settling a finished handle is harmless): a
                # failed write must not turn a successful delete into a failure.
                with contextlib.suppress(ConfigError):
                    self._append({"done": done}, sync=False)

    @property
    def has_unconfirmed(self) -> bool:
        with self._lock:
            return bool(self._state.unconfirmed)

    def sent_earlier(self, message_id: str) -> bool:
        """Sent by an earlier run whose receipt handle expired: delete, never send again."""
        with self._lock:
            return message_id in self._state.unconfirmed

    def copy_deleted(self, message_id: str) -> None:
        with self._lock:
            if message_id in self._state.unconfirmed:
                self._state.unconfirmed.discard(message_id)
                if self.report is not None:
                    self.report.sent_copies_deleted += 1
                with contextlib.suppress(ConfigError):  # kept: deleting it again is harmless
                    self._append({"copy_done": [message_id]})


def _map(
    fn: Callable[[Sequence[tuple[str, str]]], tuple[int, list[str]]],
    chunks: list[Sequence[tuple[str, str]]],
    workers: int,
) -> list[tuple[int, list[str]]]:
    if not chunks:
        return []
    workers = max(1, min(workers, len(chunks)))
    if workers == 1:
        return [fn(c) for c in chunks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, chunks))


def open_journal(directory: Path, *, source_url: str, target_url: str) -> RedriveJournal:
    """Lock the DLQ's journal (refused, exit 6, while another redrive of it runs)."""
    journal = RedriveJournal(directory, source_url, target_url)
    journal._acquire()
    return journal
