"""Sending and deleting one received batch: send first (entry by entry when the whole
call is refused, without AWSTraceHeader when the target refuses it), journal what was
sent, then delete from the DLQ exactly the entries whose send succeeded."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dbops.errors import DbopsError, NotFoundError, RemoteError
from dbops.names import queue_name
from dbops.ports import BatchResult, OutgoingMessage
from dbops.services.messages import ParsedMessage
from dbops.services.redrive.models import CONSECUTIVE_SEND_FAILURES_FATAL
from dbops.services.redrive.shaping import (
    outgoing,
    refuses_system_attributes,
    split_by_size,
    strip_system_attributes,
)
from dbops.services.redrive.state import RunState


class BatchMover(RunState):
    """`_move` a matched batch: the send/delete half of a copy pass."""

    def _send(
        self, batch: Sequence[OutgoingMessage], record: Callable[[BatchResult], None]
    ) -> BatchResult:
        """Per-entry outcome. A batch-level rejection (e.g. one entry over the target's
        size limit on implementations that refuse the whole call) is retried entry by
        entry so that one bad message cannot hold back the rest. An entry refused for its
        AWSTraceHeader is sent again without it (counted in `system_attributes_dropped`).
        `record` sees every call's successes as soon as it returns (the journal)."""
        if not self.system_attributes_ok and any(e.system_attributes for e in batch):
            batch = self._strip_system_attributes(batch)
        try:
            result = self.q.send_batch(self.o.target_url, batch)
        except NotFoundError:
            raise
        except RemoteError as exc:
            with self.lock:
                self.result.calls.send_calls += 1
            if refuses_system_attributes(exc.message) and any(e.system_attributes for e in batch):
                self.system_attributes_ok = False  # the endpoint does not take them at all
                return self._send(batch, record)
            if len(batch) == 1:
                return BatchResult(failed={batch[0].id: exc.one_line()})
            merged = BatchResult()
            for entry in batch:
                single = self._send([entry], record)
                merged.successful.update(single.successful)
                merged.failed.update(single.failed)
            return merged
        with self.lock:
            self.result.calls.send_calls += 1
            self.result.calls.sent += len(result.successful)
        record(result)
        refused = [
            e
            for e in batch
            if e.system_attributes
            and e.id in result.failed
            and refuses_system_attributes(result.failed[e.id])
        ]
        if refused:
            retry = self._send(self._strip_system_attributes(refused), record)
            for e in refused:
                result.failed.pop(e.id, None)
            result.successful.update(retry.successful)
            result.failed.update(retry.failed)
        return result

    def _strip_system_attributes(self, batch: Sequence[OutgoingMessage]) -> list[OutgoingMessage]:
        stripped = strip_system_attributes(batch)
        with self.lock:
            self.result.system_attributes_dropped += sum(1 for e in batch if e.system_attributes)
        return stripped

    def _move(self, matching: Sequence[ParsedMessage], received_at: float) -> None:
        by_entry: dict[str, ParsedMessage] = {}
        entries: list[OutgoingMessage] = []
        limit = self.o.max_message_size
        for index, m in enumerate(matching):
            entry_id = str(index)
            by_entry[entry_id] = m
            entries.append(outgoing(entry_id, m, limit=limit, target_fifo=self.o.target_fifo))
        batches, oversized = split_by_size(entries, limit)
        for entry, size in oversized:
            m = by_entry[entry.id]
            self._fail(
                m,
                "size",
                f"message is {size} bytes; {queue_name(self.o.target_url)} accepts at most "
                f"{limit} (MaximumMessageSize)",
            )
            self._hold([m], received_at)
        journal = self.journal
        journal_error: list[DbopsError] = []

        def record(result: BatchResult) -> None:
            if journal is None:
                return
            try:
                journal.sent(
                    (by_entry[eid].message_id, by_entry[eid].receipt_handle)
                    for eid in result.successful
                    if eid in by_entry
                )
            except DbopsError as exc:  # sent all the same: delete them, then stop
                journal_error.append(exc)

        for number, batch in enumerate(batches):
            try:
                result = self._send(batch, record)
            except BaseException:
                for rest in batches[number:]:
                    self._hold([by_entry[e.id] for e in rest], received_at)
                    self._not_sent(len(rest))
                raise
            self.checkpoint("after_send")
            sent_ok = {eid: mid for eid, mid in result.successful.items() if eid in by_entry}
            for eid, why in result.failed.items():
                if eid in by_entry:
                    self._fail(by_entry[eid], "send", why)
                    self._hold([by_entry[eid]], received_at)
            unanswered = [
                e.id for e in batch if e.id not in result.successful and e.id not in result.failed
            ]
            for eid in unanswered:  # no per-entry answer: treat as not sent, keep it
                self._fail(by_entry[eid], "send", "no result for this entry")
                self._hold([by_entry[eid]], received_at)
            with self.lock:
                self.send_failure_streak = 0 if sent_ok else self.send_failure_streak + 1
                streak = self.send_failure_streak
            if sent_ok:
                self._delete_sent(sent_ok, by_entry)
            if journal_error:
                for rest in batches[number + 1 :]:
                    self._hold([by_entry[e.id] for e in rest], received_at)
                    self._not_sent(len(rest))
                raise journal_error[0]
            if number == 0 and len(batches) > 1:
                self.checkpoint("mid_batch")
            if streak >= CONSECUTIVE_SEND_FAILURES_FATAL:
                for rest in batches[number + 1 :]:
                    self._hold([by_entry[e.id] for e in rest], received_at)
                    self._not_sent(len(rest))
                reasons = sorted(set(result.failed.values()))[:1]
                raise RemoteError(
                    f"sending to {queue_name(self.o.target_url)} keeps failing"
                    + (f" ({reasons[0]})" if reasons else ""),
                    hint="nothing was lost: unsent messages stay in the DLQ",
                )

    def _delete_sent(
        self, sent_ok: Mapping[str, str], by_entry: Mapping[str, ParsedMessage]
    ) -> None:
        handles = {eid: by_entry[eid].receipt_handle for eid in sent_ok}
        try:
            deleted = self._delete(handles)
        except DbopsError as exc:
            deleted = BatchResult(failed={eid: exc.one_line() for eid in handles})
        self.checkpoint("after_delete")
        with self.lock:
            self.result.moved += len(deleted.successful)
            for eid in deleted.successful:
                if by_entry[eid].message_id in self.recent:
                    self.recent[by_entry[eid].message_id] = True
            if self.o.sent_sink is not None:
                for eid in deleted.successful:
                    self.o.sent_sink.append((sent_ok[eid], by_entry[eid].job_id))
        for eid, why in deleted.failed.items():
            # Sent but still in the DLQ: a duplicate is possible, nothing is lost.
            self._fail(by_entry[eid], "delete", f"sent, but delete from the DLQ failed: {why}")
            with self.lock:
                self.result.duplicates_possible += 1
                if self.o.sent_sink is not None:
                    self.o.sent_sink.append((sent_ok[eid], by_entry[eid].job_id))
