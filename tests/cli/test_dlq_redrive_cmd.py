"""`dbops dlq redrive`, `redrive-status`, `redrive-cancel` through the real CLI."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QueuePair
from tests.helpers import invoke, one_line_error
from tests.services.test_redrive import FailingWorker, counts, job_body, make_queue, seed, unique

pytestmark = pytest.mark.sqs

CONTRACT = {"scanned", "matched", "moved", "failed", "released", "dry_run", "method"}


def _native_supported(env: QueuePair) -> bool:
    arn = env.client.get_queue_attributes(QueueUrl=env.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    try:
        env.client.list_message_move_tasks(SourceArn=arn)
    except Exception:  # moto: 500 "not implemented"
        return False
    return True


def test_redrive_infers_the_target_and_reports_the_json_contract(env: QueuePair) -> None:
    bodies = [job_body(i) for i in range(15)]
    seed(env.client, env.dlq_url, bodies)

    result = invoke(["dlq", "redrive", "--yes", "-o", "json"]).json

    assert set(result) >= CONTRACT
    assert result["method"] == "copy" and result["dry_run"] is False
    assert (result["scanned"], result["matched"], result["moved"], result["failed"]) == (
        15,
        15,
        15,
        0,
    )
    assert result["target"] == env.main_url and result["failures"] == []
    assert isinstance(result["duration_seconds"], float)
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == sorted(bodies)
    assert env.drain(env.dlq_url) == []


def test_redrive_writes_one_action_log_row(env: QueuePair) -> None:
    seed(env.client, env.dlq_url, ["a", "b", "c"])
    invoke(["dlq", "redrive", "--yes", "--to", env.main_name, "-o", "json"])

    rows = [r for r in invoke(["log", "-o", "json"]).json if r["command"] == "dlq redrive"]

    assert len(rows) == 1
    assert rows[0]["outcome"] == "ok" and rows[0]["counts"]["moved"] == 3
    assert rows[0]["arguments"]["to"] == env.main_name


def test_filters_through_the_cli_leave_others_visible(env: QueuePair) -> None:
    keep = [
        json.dumps({"job_id": f"k{i}", "customer_id": "other", "plan": "pro"}) for i in range(6)
    ]
    move = [json.dumps({"job_id": f"m{i}", "customer_id": "acme", "plan": "pro"}) for i in range(4)]
    skip = [json.dumps({"job_id": "x", "customer_id": "acme", "plan": "free"})]
    seed(env.client, env.dlq_url, keep[:3] + move[:2] + skip + move[2:] + keep[3:] + ["raw"])

    result = invoke(
        ["dlq", "redrive", "--customer", "acme", "--match", "plan=pro", "--yes", "-o", "json"]
    ).json

    assert (result["matched"], result["moved"], result["released"]) == (4, 4, 8)
    assert counts(env.client, env.dlq_url) == (8, 0)
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == sorted(move)


def test_dry_run_changes_nothing(env: QueuePair) -> None:
    bodies = [job_body(i) for i in range(12)]
    seed(env.client, env.dlq_url, bodies)

    result = invoke(["dlq", "redrive", "--dry-run", "--newer-than", "1h", "-o", "json"]).json

    assert result["dry_run"] is True and result["moved"] == 0
    assert result["matched"] == 12 and result["released"] == 12
    assert counts(env.client, env.dlq_url) == (12, 0)
    assert counts(env.client, env.main_url) == (0, 0)


def test_refuses_without_yes_off_a_tty(env: QueuePair) -> None:
    seed(env.client, env.dlq_url, ["stay"])

    result = invoke(["dlq", "redrive"], code=6)

    assert "--yes" in one_line_error(result.stderr.splitlines()[-1])
    assert counts(env.client, env.dlq_url) == (1, 0)


def test_manifest_max_and_workers(env: QueuePair, tmp_path: Path) -> None:
    bodies = [f"b-{i:02d}" for i in range(40)]
    ids = seed(env.client, env.dlq_url, bodies)
    manifest = tmp_path / "review.jsonl"
    chosen = ids[::3]  # 14 messages
    manifest.write_text(
        "".join(json.dumps({"message_id": i, "body": "..."}) + "\n" for i in chosen)
    )

    result = invoke(
        [
            "dlq",
            "redrive",
            "--manifest",
            str(manifest),
            "--max",
            "10",
            "--workers",
            "3",
            "--rate",
            "500",
            "--yes",
            "-o",
            "json",
        ]
    ).json

    assert result["moved"] == 10 and result["stopped"] == "max"
    moved = {m["Body"] for m in env.drain(env.main_url)}
    assert len(moved) == 10 and moved <= {bodies[i] for i in range(0, 40, 3)}
    assert counts(env.client, env.dlq_url) == (30, 0)


def test_skip_completed_jobs(env: QueuePair, db: Any) -> None:
    done, todo = str(uuid.uuid4()), str(uuid.uuid4())
    db.execute(
        "insert into jobs (id, customer_id, status) values (%s, 'c', 'complete'), "
        "(%s, 'c', 'failed')",
        (done, todo),
    )
    seed(env.client, env.dlq_url, [json.dumps({"job_id": done}), json.dumps({"job_id": todo})])

    result = invoke(["dlq", "redrive", "--skip-completed-jobs", "--yes", "-o", "json"]).json

    assert (result["moved"], result["skipped_completed"]) == (1, 1)
    assert [json.loads(m["Body"])["job_id"] for m in env.drain(env.dlq_url)] == [done]


def test_oversized_message_is_reported_and_stays(env: QueuePair) -> None:
    target = make_queue(env.client, unique("small"), MaximumMessageSize="1024")
    seed(env.client, env.dlq_url, ["fine-1", "Z" * 1500, "fine-2"])

    result = invoke(["dlq", "redrive", "--to", target, "--yes", "-o", "json"]).json

    assert (result["moved"], result["failed"]) == (2, 1)
    [failure] = result["failures"]
    assert failure["stage"] == "size" and failure["message_id"]
    assert [m["Body"] for m in env.drain(env.dlq_url)] == ["Z" * 1500]


def test_ambiguous_target_asks_for_to(env: QueuePair) -> None:
    arn = env.client.get_queue_attributes(QueueUrl=env.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    make_queue(
        env.client,
        unique("other"),
        RedrivePolicy=json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "3"}),
    )
    result = invoke(["dlq", "redrive", "--yes"], code=2)
    assert "--to" in one_line_error(result.stderr)


def test_dlq_without_source_asks_for_to(env: QueuePair) -> None:
    lonely = make_queue(env.client, unique("lonely"))
    result = invoke(["dlq", "redrive", "--queue", lonely, "--yes"], code=2)
    assert "--to" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--rate", "0"], 2, "--rate"),
        (["--max", "-1"], 2, "--max"),
        (["--workers", "0"], 2, "--workers"),
        (["--match", "no-equals-sign"], 2, "--match"),
        (["--older-than", "soon"], 2, "--older-than"),
        (["--canary", "0"], 2, "--canary"),
        (["--queue", "no-such-queue"], 4, "does not exist"),
        (["--to", "no-such-queue"], 4, "does not exist"),
        (["--method", "native", "--customer", "acme"], 2, "native"),
        (["--method", "native", "--max", "5"], 2, "native"),
        (["--method", "native", "--rate", "2.5"], 2, "whole number"),
        (["--method", "native", "--rate", "501"], 2, "whole number"),
    ],
)
def test_bad_input_is_one_clean_line(
    env: QueuePair, args: list[str], code: int, needle: str
) -> None:
    seed(env.client, env.dlq_url, ["untouched"])
    result = invoke(["dlq", "redrive", "--yes", *args], code=code)
    assert needle in one_line_error(result.stderr)
    assert counts(env.client, env.dlq_url) == (1, 0)


def test_manifest_that_is_not_an_export_is_a_usage_error(env: QueuePair, tmp_path: Path) -> None:
    bad = tmp_path / "ids.txt"
    bad.write_text("not json\n")
    result = invoke(["dlq", "redrive", "--manifest", str(bad), "--yes"], code=2)
    assert "manifest" in one_line_error(result.stderr)
    missing = invoke(["dlq", "redrive", "--manifest", str(tmp_path / "nope"), "--yes"], code=2)
    assert "manifest" in one_line_error(missing.stderr)


def test_non_json_bodies_never_crash(env: QueuePair) -> None:
    seed(env.client, env.dlq_url, ["binary-ish \u00e9", "{not json", "[1, 2]", "null"])
    result = invoke(["dlq", "redrive", "--reason", "json", "--yes", "-o", "json"]).json
    assert result["moved"] == 1  # only "{not json" contains the text
    result = invoke(["dlq", "redrive", "--older-than", "1d", "--yes", "-o", "json"]).json
    assert result["moved"] == 0 and result["released"] == 3


def test_canary_that_comes_back_stops_with_exit_6(env: QueuePair) -> None:
    bodies = [job_body(i) for i in range(12)]
    seed(env.client, env.dlq_url, bodies)

    with FailingWorker(env.client, env.main_url):
        result = invoke(
            ["dlq", "redrive", "--canary", "2", "--canary-wait", "2s", "--yes", "-o", "json"],
            code=6,
        )

    assert "canary failed" in result.stderr
    data = result.json
    assert data["moved"] == 2 and data["canary"]["passed"] is False
    assert data["canary"]["came_back"]
    assert sorted(m["Body"] for m in env.drain(env.dlq_url)) == sorted(bodies)


def test_canary_that_stays_away_lets_the_rest_move(env: QueuePair) -> None:
    seed(env.client, env.dlq_url, [job_body(i) for i in range(12)])

    data = invoke(
        ["dlq", "redrive", "--canary", "2", "--canary-wait", "1s", "--yes", "-o", "json"]
    ).json

    assert data["canary"]["passed"] is True and data["moved"] == 12


def test_table_output_summarises(env: QueuePair) -> None:
    seed(env.client, env.dlq_url, ["one", "two"])
    result = invoke(["dlq", "redrive", "--yes"])
    assert "moved" in result.stdout and "2" in result.stdout
    assert "Redrive (copy)" in result.stderr


def test_native_unsupported_is_a_clean_remote_error(env: QueuePair) -> None:
    if _native_supported(env):
        pytest.skip("this SQS endpoint implements message move tasks (LocalStack/AWS)")
    for args in (
        ["dlq", "redrive", "--method", "native", "--yes"],
        ["dlq", "redrive-status"],
        ["dlq", "redrive-cancel", "--yes"],
    ):
        result = invoke(args, code=5)
        line = one_line_error(result.stderr)
        assert "does not implement" in line and "<" not in line


def test_native_redrive_status_and_cancel(env: QueuePair) -> None:
    if not _native_supported(env):
        pytest.skip("moto does not implement StartMessageMoveTask/ListMessageMoveTasks")
    bodies = [f"n-{i}" for i in range(10)]
    seed(env.client, env.dlq_url, bodies)

    data = invoke(
        ["dlq", "redrive", "--method", "native", "--rate", "100", "--yes", "-o", "json"]
    ).json

    assert data["method"] == "native" and data["moved"] == 10
    assert data["task_status"] == "COMPLETED"
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == bodies
    tasks = invoke(["dlq", "redrive-status", "-o", "json"]).json
    assert tasks and tasks[0]["status"] == "COMPLETED"
    missing = invoke(["dlq", "redrive-cancel", "--yes"], code=4)
    assert "no running" in one_line_error(missing.stderr)


def test_canary_rate_and_workers_together_move_every_message(env: QueuePair) -> None:
    """Issue 12 part 5, the command as reported: it said matched 14, moved 11, "drained",
    and left 3 matching messages in the DLQ, four times out of four."""
    bodies = [job_body(i) for i in range(14)]
    seed(env.client, env.dlq_url, bodies)

    data = invoke(
        [
            "dlq",
            "redrive",
            "--canary",
            "1",
            "--canary-wait",
            "2s",
            "--rate",
            "2",
            "--workers",
            "2",
            "--yes",
            "-o",
            "json",
        ]
    ).json

    assert (data["matched"], data["moved"], data["failed"], data["not_sent"]) == (14, 14, 0, 0)
    assert data["stopped"] == "drained" and data["canary"]["passed"] is True
    assert counts(env.client, env.dlq_url) == (0, 0)
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == sorted(bodies)


def test_a_rerun_settles_an_unfinished_redrive_and_says_so(env: QueuePair) -> None:
    """Issue 12 part 4 through the CLI: preview, JSON `settled`, table warning, action log."""
    from dbops.adapters.sqs import SqsQueues
    from dbops.config_files import data_dir
    from tests.services.test_redrive_journal import killed_run

    bodies = [job_body(i) for i in range(15)]
    seed(env.client, env.dlq_url, bodies)
    sqs = SqsQueues(region="us-east-1", endpoint=env.client.meta.endpoint_url)
    journal_dir = data_dir() / "redrive-journal"
    killed_run(env.client, sqs, journal_dir, env.dlq_url, env.main_url, held=10, sent=4)

    preview = invoke(["dlq", "redrive", "--dry-run", "-o", "json"])
    assert "An earlier redrive of this DLQ did not finish" in preview.stderr
    assert "4 message(s) it already sent will be deleted" in preview.stderr
    assert preview.json["settled"] is None  # a dry run settles nothing
    assert counts(env.client, env.dlq_url) == (5, 10)

    result = invoke(["dlq", "redrive", "--yes", "-o", "json"])

    settled = result.json["settled"]
    assert {k: settled[k] for k in ("deleted_already_sent", "released", "expired")} == {
        "deleted_already_sent": 4,
        "released": 6,
        "expired": 0,
    }
    assert result.json["moved"] == 11 and result.json["stopped"] == "drained"
    assert "Settled an earlier redrive that did not finish: 4 message(s)" in result.stderr
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == sorted(bodies)
    assert counts(env.client, env.dlq_url) == (0, 0)
    rows = invoke(["log", "-o", "json"]).json
    [row] = [r for r in rows if r["command"] == "dlq redrive" and r["outcome"] == "ok"]
    assert row["counts"]["settled"]["deleted_already_sent"] == 4


def test_an_unwritable_journal_folder_is_a_config_error_before_anything_moves(
    env: QueuePair,
) -> None:
    from dbops.config_files import data_dir

    seed(env.client, env.dlq_url, ["stay"])
    data_dir().mkdir(parents=True, exist_ok=True)
    (data_dir() / "redrive-journal").write_text("not a folder")

    result = invoke(["dlq", "redrive", "--yes", "-o", "json"], code=3)

    line = one_line_error(result.stderr.splitlines()[-1])
    assert "cannot write the redrive journal" in line and "DBOPS_DATA_DIR" in line
    assert counts(env.client, env.dlq_url) == (1, 0)
    assert counts(env.client, env.main_url) == (0, 0)


def test_filter_values_are_stripped_like_the_other_dlq_commands(env: QueuePair) -> None:
    """The shared filter builder: ` acme ` selects customer acme (as in dlq list/delete)."""
    move = [json.dumps({"job_id": f"s{i}", "customer_id": "acme"}) for i in range(3)]
    keep = [json.dumps({"job_id": "o", "customer_id": "other"})]
    seed(env.client, env.dlq_url, move + keep)

    result = invoke(
        ["dlq", "redrive", "-q", env.dlq_url, "--customer", " acme ", "--yes", "-o", "json"]
    ).json

    assert (result["matched"], result["moved"]) == (3, 3)
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == sorted(move)


def test_hidden_lease_option(env: QueuePair) -> None:
    """`--lease` is for tests and slow networks: hidden from help, checked like a duration."""
    assert "--lease" not in invoke(["dlq", "redrive", "--help"]).stdout
    seed(env.client, env.dlq_url, ["untouched"])
    for bad in ("5", "1s"):  # no unit; shorter than the 2 s minimum
        result = invoke(["dlq", "redrive", "--lease", bad, "--yes"], code=2)
        assert "lease" in one_line_error(result.stderr)
    assert counts(env.client, env.dlq_url) == (1, 0)
    result = invoke(["dlq", "redrive", "--lease", "30s", "--yes", "-o", "json"]).json
    assert result["moved"] == 1
