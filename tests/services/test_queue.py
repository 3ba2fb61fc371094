"""Queue service: info, depth, list against moto over HTTP; rate arithmetic (pure)."""

from __future__ import annotations

import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.errors import NotFoundError
from dbops.services import queue as svc
from dbops.services.queue import QueueCounts, RateTracker


@pytest.fixture
def port(sqs_endpoint):
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint)


def _send(client, url, n):
    for start in range(0, n, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": f'{{"job_id": "j{start + i}"}}'}
                for i in range(min(10, n - start))
            ],
        )


# --------------------------------------------------------------------------- rates (pure)
def test_rate_tracker_first_sample_has_no_rates():
    sample = RateTracker("q").add(QueueCounts(visible=10, in_flight=2, delayed=1), at=1000.0)
    assert sample.sample == 1
    assert sample.total == 13
    assert sample.in_rate is None and sample.out_rate is None and sample.drain_rate is None
    assert sample.time_to_empty_seconds is None


def test_rate_tracker_draining_queue_estimates_time_to_empty():
    tracker = RateTracker("q")
    tracker.add(QueueCounts(visible=100, in_flight=0, delayed=0), at=0.0)
    second = tracker.add(QueueCounts(visible=80, in_flight=0, delayed=0), at=2.0)
    assert second.interval_seconds == 2.0
    assert second.out_rate == 10.0 and second.in_rate == 0.0
    assert second.drain_rate == 10.0
    assert second.time_to_empty_seconds == 8.0
    third = tracker.add(QueueCounts(visible=70, in_flight=0, delayed=0), at=4.0)
    assert third.out_rate == 5.0
    assert third.drain_rate == 7.5  # (100 - 70) / 4 over the window
    assert third.time_to_empty_seconds == pytest.approx(70 / 7.5, abs=0.01)


def test_rate_tracker_growing_queue_has_no_time_to_empty():
    tracker = RateTracker("q")
    tracker.add(QueueCounts(visible=5, in_flight=0, delayed=0), at=0.0)
    sample = tracker.add(QueueCounts(visible=9, in_flight=1, delayed=0), at=1.0)
    assert sample.in_rate == 5.0 and sample.out_rate == 0.0
    assert sample.drain_rate == -5.0
    assert sample.time_to_empty_seconds is None


def test_rate_tracker_empty_queue_is_empty_now_and_window_slides():
    tracker = RateTracker("q", window=2)
    tracker.add(QueueCounts(visible=50, in_flight=0, delayed=0), at=0.0)
    tracker.add(QueueCounts(visible=10, in_flight=0, delayed=0), at=1.0)
    sample = tracker.add(QueueCounts(visible=0, in_flight=0, delayed=0), at=2.0)
    assert sample.time_to_empty_seconds == 0.0
    assert sample.drain_rate == 10.0  # only the last two samples are in the window


def test_rate_tracker_same_timestamp_does_not_divide_by_zero():
    tracker = RateTracker("q")
    tracker.add(QueueCounts(visible=5, in_flight=0, delayed=0), at=1.0)
    sample = tracker.add(QueueCounts(visible=4, in_flight=0, delayed=0), at=1.0)
    assert sample.in_rate is None and sample.drain_rate is None


def test_queue_name_from_url_arn_and_name():
    from dbops.names import queue_name

    assert queue_name("http://h:1/123456789012/jobs-dlq") == "jobs-dlq"
    assert queue_name("http://h:1/123456789012/jobs-dlq/") == "jobs-dlq"
    assert queue_name("arn:aws:sqs:us-east-1:123456789012:jobs-dlq") == "jobs-dlq"
    assert queue_name("jobs") == "jobs"


# --------------------------------------------------------------------------- against SQS
def test_info_of_main_queue_shows_redrive_policy_and_dlq(port, queues):
    info = svc.queue_info(queues=port, queue=queues.main_name)
    assert info.url == queues.main_url
    assert info.visibility_timeout_seconds == 300
    assert info.dead_letter_queue == queues.dlq_name
    assert info.dead_letter_queue_url == queues.dlq_url
    assert info.max_receive_count == 3
    assert info.redrive_policy is not None
    assert info.is_dead_letter_queue is False


def test_info_of_dlq_lists_its_sources(port, queues):
    info = svc.queue_info(queues=port, queue=queues.dlq_url)
    assert info.is_dead_letter_queue is True
    assert info.dead_letter_sources == [queues.main_name]
    assert info.retention_seconds == 1209600
    assert info.created_at is not None
    assert info.dead_letter_queue is None


def test_depth_counts_and_sampled_age(port, queues):
    _send(queues.client, queues.dlq_url, 7)
    queues.client.receive_message(
        QueueUrl=queues.dlq_url, MaxNumberOfMessages=2, VisibilityTimeout=120
    )
    rows = svc.depth(queues=port, queue_urls=[queues.main_url, queues.dlq_url])
    main, dlq = rows
    assert (main.queue, main.visible, main.in_flight, main.total) == (queues.main_name, 0, 0, 0)
    assert main.oldest_age_seconds is None and main.oldest_age_source is None
    assert "empty" in (main.oldest_age_note or "")
    assert dlq.in_flight == 2 and dlq.visible == 5 and dlq.total == 7
    # moto has no CloudWatch data for SQS: estimated from a peek, and labelled as such
    assert dlq.oldest_age_source == "sample" and dlq.oldest_age_seconds is not None
    assert "peeked" in (dlq.oldest_age_note or "")
    # the peek consumed nothing and hid nothing
    assert svc.read_counts(queues=port, queue_url=queues.dlq_url).visible == 5


def _sent_ms(queues, url) -> list[int]:
    got = queues.client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
    )
    return [int(m["Attributes"]["SentTimestamp"]) for m in got.get("Messages", [])]


def test_sampled_age_is_the_oldest_sent_timestamp_seen(port, queues):
    _send(queues.client, queues.dlq_url, 3)
    oldest = min(_sent_ms(queues, queues.dlq_url)) / 1000
    attrs = port.get_attributes(queues.dlq_url)
    age = svc.oldest_age(queues=port, queue_url=queues.dlq_url, attrs=attrs, now=oldest + 600)
    assert age.source == "sample" and age.sampled == 3
    assert age.seconds == pytest.approx(600, abs=0.1)
    never = svc.oldest_age(queues=port, queue_url=queues.dlq_url, attrs=attrs, sample=False)
    assert (never.seconds, never.source) == (None, None) and "--no-sample" in (never.note or "")


def test_queue_with_redrive_policy_is_sampled_only_when_asked(port, queues):
    _send(queues.client, queues.main_url, 2)
    attrs = port.get_attributes(queues.main_url)
    auto = svc.oldest_age(queues=port, queue_url=queues.main_url, attrs=attrs)
    assert auto.source is None and auto.seconds is None
    assert "maxReceiveCount (3)" in (auto.note or "")
    # nothing was received: the receive counts are untouched
    counts = queues.client.receive_message(
        QueueUrl=queues.main_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        AttributeNames=["All"],
    )["Messages"]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in counts} == {"1"}
    forced = svc.oldest_age(queues=port, queue_url=queues.main_url, attrs=attrs, sample=True)
    assert forced.source == "sample" and forced.seconds is not None
    assert svc.read_counts(queues=port, queue_url=queues.main_url).visible == 2


def test_info_carries_the_oldest_age_and_its_source(port, queues):
    _send(queues.client, queues.dlq_url, 1)
    info = svc.queue_info(queues=port, queue=queues.dlq_url)
    assert info.oldest_age_source == "sample" and info.oldest_age_seconds is not None
    main = svc.queue_info(queues=port, queue=queues.main_url)
    assert main.oldest_age_source is None and main.oldest_age_note


def test_cloudwatch_figure_wins_over_a_sample(port, queues, sqs_endpoint):
    import datetime as dt

    import boto3

    _send(queues.client, queues.dlq_url, 1)
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=sqs_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        cloudwatch.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": queues.dlq_name}],
                    "Value": 4321,
                    "Unit": "Seconds",
                    "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30),
                }
            ],
        )
    except Exception as exc:  # LocalStack's SQS-only install has no CloudWatch
        pytest.skip(f"this endpoint has no CloudWatch: {type(exc).__name__}")
    (row,) = svc.depth(queues=port, queue_urls=[queues.dlq_url])
    if row.oldest_age_source != "cloudwatch":
        pytest.skip("the endpoint accepted the metric but does not serve it back")
    assert row.oldest_age_seconds == 4321 and row.oldest_age_note is None


def test_list_queues_by_prefix_marks_dlq(port, queues):
    prefix = queues.main_name
    rows = {r.queue: r for r in svc.list_queues(queues=port, prefix=prefix)}
    assert set(rows) == {queues.main_name, queues.dlq_name}
    assert rows[queues.main_name].dead_letter_queue == queues.dlq_name
    assert rows[queues.dlq_name].is_dead_letter_queue is True
    assert rows[queues.main_name].is_dead_letter_queue is False


def test_nonexistent_queue_is_not_found(port):
    with pytest.raises(NotFoundError):
        svc.queue_info(queues=port, queue="no-such-queue-dbops")
