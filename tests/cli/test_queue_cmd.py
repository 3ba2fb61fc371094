"""`dbops queue ...` through the CLI (CliRunner; a subprocess for Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from dbops.services import queue as queue_service
from tests.helpers import invoke, one_line_error


def _send(client, url, n):
    for start in range(0, n, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(min(10, n - start))],
        )


def test_depth_defaults_to_main_queue_and_dlq(env):
    _send(env.client, env.dlq_url, 4)
    rows = invoke(["queue", "depth", "-o", "json"]).json
    assert [r["queue"] for r in rows] == [env.main_name, env.dlq_name]
    dlq = rows[1]
    assert (dlq["visible"], dlq["in_flight"], dlq["delayed"]) == (4, 0, 0)
    # no CloudWatch data: estimated from a peek of the DLQ, and labelled as such
    assert dlq["oldest_age_source"] == "sample" and dlq["oldest_age_seconds"] >= 0
    main = rows[0]
    assert main["oldest_age_source"] is None and main["oldest_age_seconds"] is None
    assert "empty" in main["oldest_age_note"]
    assert env.visible(env.dlq_url) == 4


def test_depth_sample_options(env):
    _send(env.client, env.main_url, 2)
    auto = invoke(["queue", "depth", env.main_name, "-o", "json"]).json[0]
    assert auto["oldest_age_source"] is None and "--sample" in auto["oldest_age_note"]
    forced = invoke(["queue", "depth", env.main_name, "--sample", "-o", "json"]).json[0]
    assert forced["oldest_age_source"] == "sample"
    off = invoke(["queue", "depth", env.main_name, "--no-sample", "-o", "json"]).json[0]
    assert off["oldest_age_source"] is None and off["oldest_age_seconds"] is None
    info = invoke(["queue", "info", env.main_name, "--sample", "-o", "json"]).json
    assert info["oldest_age_source"] == "sample" and info["oldest_age_seconds"] >= 0
    assert env.visible(env.main_url) == 2


def test_depth_of_named_queues_and_table(env):
    rows = invoke(["queue", "depth", env.dlq_name, "-o", "json"]).json
    assert [r["queue"] for r in rows] == [env.dlq_name]
    table = invoke(["queue", "depth", env.dlq_url])
    assert env.dlq_name in table.stdout and "n/a" in table.stdout
    _send(env.client, env.dlq_url, 1)
    table = invoke(["queue", "depth", env.dlq_url])
    assert "(sample)" in table.stdout and "peeked" in table.stderr


def test_nonexistent_queue_exits_4(env):
    result = invoke(["queue", "depth", "no-such-queue-dbops", "-o", "json"], code=4)
    assert "does not exist" in one_line_error(result.stderr)
    assert result.stdout == ""
    invoke(["queue", "info", "no-such-queue-dbops"], code=4)
    invoke(["queue", "watch", "--count", "1", "no-such-queue-dbops"], code=4)


def test_depth_without_configuration_exits_3(queues, sqs_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    result = invoke(["queue", "depth"], code=3)
    assert "SQS_QUEUE_URL" in one_line_error(result.stderr)


def test_info_shows_redrive_policy_and_sources(env):
    main = invoke(["queue", "info", "-o", "json"]).json
    assert main["queue"] == env.main_name
    assert main["dead_letter_queue"] == env.dlq_name
    assert main["max_receive_count"] == 3
    assert main["visibility_timeout_seconds"] == 300
    dlq = invoke(["queue", "info", env.dlq_name, "-o", "json"]).json
    assert dlq["is_dead_letter_queue"] is True
    assert dlq["dead_letter_sources"] == [env.main_name]
    table = invoke(["queue", "info", env.dlq_name])
    assert env.main_name in table.stdout


def test_list_by_prefix(env):
    rows = invoke(["queue", "list", "--prefix", env.main_name, "-o", "json"]).json
    assert {r["queue"] for r in rows} == {env.main_name, env.dlq_name}
    none = invoke(["queue", "list", "--prefix", "zz-no-such-prefix"])
    assert "no queues" in none.stderr


def test_watch_streams_jsonl_samples(env):
    _send(env.client, env.dlq_url, 3)
    lines = invoke(
        ["queue", "watch", "--interval", "1s", "--count", "2", "-o", "jsonl", env.dlq_name]
    ).jsonl
    assert [line["sample"] for line in lines] == [1, 2]
    assert all(line["queue"] == env.dlq_name and line["total"] == 3 for line in lines)
    assert lines[0]["in_rate"] is None
    assert lines[1]["in_rate"] == 0.0 and lines[1]["out_rate"] == 0.0
    assert lines[1]["interval_seconds"] >= 1


def test_watch_table_runs_once(env):
    result = invoke(["queue", "watch", "--count", "1"])
    assert env.dlq_name in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "watch", "--interval", "soon"],
        ["queue", "watch", "--interval", "0s"],
        ["queue", "watch", "--count", "0"],
        ["queue", "watch", "-o", "json", "--count", "1"],
    ],
)
def test_watch_bad_input_exits_2(env, args):
    invoke(args, code=2)


def test_watch_ctrl_c_exits_130(env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbops", "queue", "watch", "--interval", "1m", "-o", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first sample is out: now in the wait
        assert env.main_name in first
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in stderr


def test_watch_table_draws_a_depth_sparkline_and_jsonl_has_none(env):
    _send(env.client, env.dlq_url, 2)
    table = invoke(["queue", "watch", "--interval", "1s", "--count", "2", env.dlq_name]).stdout
    assert "trend" in table
    assert "▁▁" in table  # two samples of the same depth: a flat line
    lines = invoke(
        ["queue", "watch", "--interval", "1s", "--count", "1", "-o", "jsonl", env.dlq_name]
    ).jsonl
    assert "▁" not in json.dumps(lines, ensure_ascii=False)
    assert not any("trend" in key for key in lines[0])


def test_rate_tracker_keeps_the_window_of_totals_for_the_sparkline():
    from dbops.cli.charts import sparkline

    tracker = queue_service.RateTracker("q", window=3)
    for at, total in enumerate([19, 140, 60, 0]):
        tracker.add(queue_service.QueueCounts(visible=total, in_flight=0, delayed=0), at=at)
    assert tracker.totals == [140, 60, 0]
    assert sparkline(tracker.totals) == "█▄▁"
