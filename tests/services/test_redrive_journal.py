"""The redrive journal (issue 12 part 4): a re-run settles what an unfinished run left.

A killed run is reproduced here without a subprocess: messages are received under the real
5-minute lease, some are sent to the target, the journal records both, and the journal's
file descriptors are closed without cleaning up (what the kernel does on SIGKILL). The
process-level kills are in tests/reliability/test_redrive_kill.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.errors import RefusedError
from dbops.services import redrive
from dbops.services.redrive import journal as redrive_journal
from tests.conftest import QueuePair
from tests.services.test_redrive import counts, job_body, seed

pytestmark = pytest.mark.sqs


@pytest.fixture
def sqs(sqs_endpoint: str) -> SqsQueues:
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)


def receive(client: Any, url: str, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < n:
        batch = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, n - len(got)),
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        assert batch, "the DLQ ran dry"
        got.extend(batch)
    return got


def send(client: Any, url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": m["Body"]}
                for i, m in enumerate(messages[start : start + 10])
            ],
        )


def abandon(journal: redrive_journal.RedriveJournal) -> None:
    """What SIGKILL does: file descriptors closed (the lock goes), nothing cleaned up."""
    for name in ("_fd", "_lock_fd"):
        fd = getattr(journal, name)
        if fd is not None:
            os.close(fd)
            setattr(journal, name, None)


def killed_run(
    client: Any, sqs: SqsQueues, journal_dir: Path, dlq: str, target: str, *, held: int, sent: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An unfinished run: `held` messages received, the first `sent` of them also sent."""
    journal = redrive_journal.open_journal(journal_dir, source_url=dlq, target_url=target)
    assert journal.settle(sqs) is None
    got = receive(client, dlq, held)
    journal.received((m["MessageId"], m["ReceiptHandle"]) for m in got)
    send(client, target, got[:sent])
    journal.sent((m["MessageId"], m["ReceiptHandle"]) for m in got[:sent])
    abandon(journal)
    return got[:sent], got[sent:]


def test_rerun_deletes_what_was_sent_releases_the_rest_and_sends_each_once(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path
) -> None:
    client = queues.client
    bodies = [job_body(i) for i in range(25)]
    seed(client, queues.dlq_url, bodies)
    journal_dir = tmp_path / "journal"
    killed_run(client, sqs, journal_dir, queues.dlq_url, queues.main_url, held=20, sent=7)
    assert counts(client, queues.dlq_url) == (5, 20)  # leased for 5 minutes

    result = redrive.copy_redrive(
        queues=sqs, dlq_url=queues.dlq_url, target_url=queues.main_url, journal_dir=journal_dir
    )

    assert result.settled is not None
    assert (
        result.settled.deleted_already_sent,
        result.settled.released,
        result.settled.expired,
    ) == (7, 13, 0)
    assert result.moved == 18 and result.stopped == "drained"
    assert counts(client, queues.dlq_url) == (0, 0)  # no wait for the lease
    assert sorted(m["Body"] for m in queues.drain(queues.main_url)) == sorted(bodies)
    assert not list(journal_dir.glob("*.jsonl"))  # nothing left to settle


def test_a_sent_message_whose_handle_expired_is_deleted_when_found_never_resent(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path
) -> None:
    client = queues.client
    bodies = [job_body(i) for i in range(6)]
    ids = seed(client, queues.dlq_url, bodies)
    send(client, queues.main_url, [{"Body": bodies[0]}])  # the earlier run sent it
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir(mode=0o700)
    path = redrive_journal.journal_path(journal_dir, queues.dlq_url)
    path.write_text(  # written by hand: the documented format, and a line cut by the kill
        json.dumps({"v": 1, "source": queues.dlq_url, "target": queues.main_url, "pid": 1})
        + "\n"
        + json.dumps({"held": [[ids[0], "expired-handle"]]})
        + "\n"
        + json.dumps({"sent": [[ids[0], "expired-handle"]]})
        + '\n{"held": [["x", "trunc'
    )

    pending = redrive.preview(
        queues=sqs,
        dlq_url=queues.dlq_url,
        target_url=queues.main_url,
        method="copy",
        journal_dir=journal_dir,
    ).journal
    assert pending is not None and (pending.sent, pending.held, pending.running_pid) == (1, 0, None)

    result = redrive.copy_redrive(
        queues=sqs, dlq_url=queues.dlq_url, target_url=queues.main_url, journal_dir=journal_dir
    )

    assert result.settled is not None
    assert (result.settled.deleted_already_sent, result.settled.expired) == (0, 1)
    assert result.settled.sent_copies_deleted == 1  # found by the scan, deleted, not sent
    assert result.moved == 5
    assert sorted(m["Body"] for m in queues.drain(queues.main_url)) == sorted(bodies)
    assert counts(client, queues.dlq_url) == (0, 0)


def test_a_run_that_ends_before_meeting_an_expired_sent_message_keeps_remembering_it(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path
) -> None:
    client = queues.client
    bodies = [json.dumps({"job_id": f"j{i}", "customer_id": "acme"}) for i in range(4)]
    ids = seed(client, queues.dlq_url, bodies)
    journal_dir = tmp_path / "journal"
    journal = redrive_journal.open_journal(
        journal_dir, source_url=queues.dlq_url, target_url=queues.main_url
    )
    journal.settle(sqs)
    journal.sent([(ids[3], "expired-handle")])
    abandon(journal)

    first = redrive.copy_redrive(
        queues=sqs,
        dlq_url=queues.dlq_url,
        target_url=queues.main_url,
        max_messages=1,
        journal_dir=journal_dir,
    )
    assert first.settled is not None and first.settled.expired == 1
    assert first.stopped == "max"
    pending = redrive_journal.pending(journal_dir, queues.dlq_url)
    assert pending is not None and pending.sent_unconfirmed in (0, 1)

    rest = redrive.copy_redrive(
        queues=sqs, dlq_url=queues.dlq_url, target_url=queues.main_url, journal_dir=journal_dir
    )

    moved = {m["Body"] for m in queues.drain(queues.main_url)}
    assert bodies[3] not in moved  # sent by the killed run: never sent again
    assert moved == set(bodies[:3])
    assert first.moved + rest.moved == 3
    assert counts(client, queues.dlq_url) == (0, 0)
    assert redrive_journal.pending(journal_dir, queues.dlq_url) is None


def test_journal_file_is_private_and_removed_after_a_clean_run(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path
) -> None:
    client = queues.client
    seed(client, queues.dlq_url, [job_body(i) for i in range(12)])
    journal_dir = tmp_path / "journal"
    seen: list[tuple[int, int, list[dict[str, Any]]]] = []

    def checkpoint(point: str) -> None:
        if point == "after_send" and not seen:
            [path] = journal_dir.glob("*.jsonl")
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            seen.append((path.stat().st_mode & 0o777, journal_dir.stat().st_mode & 0o777, lines))

    result = redrive.copy_redrive(
        queues=sqs,
        dlq_url=queues.dlq_url,
        target_url=queues.main_url,
        journal_dir=journal_dir,
        checkpoint=checkpoint,
    )

    assert result.moved == 12 and result.settled is None
    [(file_mode, dir_mode, lines)] = seen
    assert (file_mode, dir_mode) == (0o600, 0o700)
    assert lines[0]["source"] == queues.dlq_url and lines[0]["v"] == 1
    assert len(lines[1]["held"]) == 10 and len(lines[2]["sent"]) == 10
    assert {m for m, _h in lines[2]["sent"]} == {m for m, _h in lines[1]["held"]}
    assert list(journal_dir.glob("*.jsonl")) == []


def test_a_second_redrive_of_the_same_dlq_is_refused_and_touches_nothing(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path
) -> None:
    client = queues.client
    seed(client, queues.dlq_url, ["a", "b"])
    journal_dir = tmp_path / "journal"
    running = redrive_journal.open_journal(
        journal_dir, source_url=queues.dlq_url, target_url=queues.main_url
    )
    try:
        pending = redrive_journal.pending(journal_dir, queues.dlq_url)
        assert pending is not None and pending.running_pid == os.getpid()
        with pytest.raises(RefusedError, match=f"is running \\(pid {os.getpid()}\\)"):
            redrive.copy_redrive(
                queues=sqs,
                dlq_url=queues.dlq_url,
                target_url=queues.main_url,
                journal_dir=journal_dir,
            )
        # a dry run takes no lock and settles nothing
        dry = redrive.copy_redrive(
            queues=sqs,
            dlq_url=queues.dlq_url,
            target_url=queues.main_url,
            journal_dir=journal_dir,
            dry_run=True,
        )
        assert dry.matched == 2 and dry.settled is None
    finally:
        running.close(drained=False)
    assert counts(client, queues.dlq_url) == (2, 0)
    result = redrive.copy_redrive(
        queues=sqs, dlq_url=queues.dlq_url, target_url=queues.main_url, journal_dir=journal_dir
    )
    assert result.moved == 2


def test_the_journal_stays_small_and_exact_when_it_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long run appends far more than it holds: the file is rewritten as it grows (never
    in proportion to the messages moved) and replays to exactly the outstanding state."""
    monkeypatch.setattr(redrive_journal, "COMPACT_MIN_BYTES", 1 << 16)
    source = "http://sqs.local/123/compact-dlq"
    journal = redrive_journal.open_journal(tmp_path, source_url=source, target_url="t")
    assert journal.settle(None) is None  # type: ignore[arg-type]  # nothing to settle
    path = redrive_journal.journal_path(tmp_path, source)
    keep = [(f"keep{i}", f"hk{i}-" + "k" * 600) for i in range(15)]
    journal.received(keep)  # held until the end, like non-matching messages
    sizes = []
    for batch in range(300):  # 3,000 messages moved
        pairs = [(f"m{batch}-{i}", f"h{batch}-{i}-" + "x" * 600) for i in range(10)]
        journal.received(pairs)
        journal.sent(pairs[:9])
        journal.finished(h for _m, h in pairs[:9])  # deleted
        sizes.append(path.stat().st_size)
    unsent = [(f"m{b}-9", f"h{b}-9-" + "x" * 600) for b in range(300)]

    state = redrive_journal._read(path)
    assert state.held == {h: m for m, h in keep + unsent}
    assert state.sent == {}
    one_pair = len(json.dumps([unsent[0]]))
    assert max(sizes) < 3 * (len(keep) + len(unsent) + 20) * one_pair + (1 << 16)
    assert max(sizes) < 300 * 20 * one_pair / 4  # far below an append-only log

    abandon(journal)  # killed: a re-run would settle exactly the held ones
    pending = redrive_journal.pending(tmp_path, source)
    assert pending is not None and (pending.held, pending.sent) == (315, 0)


def test_state_replay_follows_the_documented_order() -> None:
    state = redrive_journal._State()
    state.apply({"held": [["m1", "h1"], ["m2", "h2"], ["m3", "h3"]]})
    state.apply({"sent": [["m1", "h1"]], "done": ["h2"]})
    state.apply({"sent_unconfirmed": ["m9", "m8"], "held": [["bad"], 3]})
    state.apply({"copy_done": ["m9"]})
    assert state.held == {"h3": "m3"}
    assert state.sent == {"h1": "m1"}
    assert state.unconfirmed == {"m8"}


def test_an_expired_sent_id_is_kept_while_some_message_was_hidden_from_the_scan(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path
) -> None:
    """A message another reader held while this run drained the DLQ was not seen: if it is
    one the killed run already sent, forgetting its id would let a later run send it twice."""
    client = queues.client
    bodies = [job_body(i) for i in range(4)]
    ids = seed(client, queues.dlq_url, bodies)
    journal_dir = tmp_path / "journal"
    journal = redrive_journal.open_journal(
        journal_dir, source_url=queues.dlq_url, target_url=queues.main_url
    )
    journal.settle(sqs)
    journal.sent([(ids[0], "expired-handle")])
    abandon(journal)
    got = receive(client, queues.dlq_url, 4)
    [peeked] = [m for m in got if m["MessageId"] == ids[0]]
    others = [m for m in got if m["MessageId"] != ids[0]]
    client.change_message_visibility_batch(  # another reader keeps only ids[0]
        QueueUrl=queues.dlq_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(others)
        ],
    )

    first = redrive.copy_redrive(
        queues=sqs, dlq_url=queues.dlq_url, target_url=queues.main_url, journal_dir=journal_dir
    )
    assert first.moved == 3 and first.stopped == "drained"
    pending = redrive_journal.pending(journal_dir, queues.dlq_url)
    assert pending is not None and pending.sent_unconfirmed == 1  # not forgotten

    client.change_message_visibility(  # the other reader lets go
        QueueUrl=queues.dlq_url, ReceiptHandle=peeked["ReceiptHandle"], VisibilityTimeout=0
    )
    second = redrive.copy_redrive(
        queues=sqs, dlq_url=queues.dlq_url, target_url=queues.main_url, journal_dir=journal_dir
    )

    assert second.moved == 0
    assert second.settled is not None and second.settled.sent_copies_deleted == 1
    assert sorted(m["Body"] for m in queues.drain(queues.main_url)) == sorted(bodies[1:])
    assert counts(client, queues.dlq_url) == (0, 0)
    assert redrive_journal.pending(journal_dir, queues.dlq_url) is None


def test_a_journal_that_cannot_be_written_mid_run_stops_without_losing_or_doubling(
    queues: QueuePair, sqs: SqsQueues, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full after a send: that batch is still deleted (it was sent), the rest stays in
    the DLQ, released at once, and the error is a clean ConfigError."""
    from dbops.errors import ConfigError

    client = queues.client
    bodies = [job_body(i) for i in range(25)]
    seed(client, queues.dlq_url, bodies)
    real_sent = redrive_journal.RedriveJournal.sent
    calls = []

    def sent(self: Any, pairs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConfigError("cannot write the redrive journal x: No space left on device")
        real_sent(self, pairs)

    monkeypatch.setattr(redrive_journal.RedriveJournal, "sent", sent)

    with pytest.raises(ConfigError, match="No space left") as caught:
        redrive.copy_redrive(
            queues=sqs,
            dlq_url=queues.dlq_url,
            target_url=queues.main_url,
            journal_dir=tmp_path / "journal",
        )

    partial = caught.value.partial_result  # type: ignore[attr-defined]
    assert partial.moved == 20 and partial.duplicates_possible == 0
    in_target = [m["Body"] for m in queues.drain(queues.main_url)]
    left = [m["Body"] for m in queues.drain(queues.dlq_url)]
    assert len(in_target) == 20 and sorted(in_target + left) == sorted(bodies)
