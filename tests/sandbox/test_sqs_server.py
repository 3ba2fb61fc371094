"""The sandbox's and the tests' moto speed-ups return what moto's own functions return."""

from __future__ import annotations

import datetime as dt
import json
import string
import time
import uuid

import moto.core.utils as utils
import moto.sqs.models as models
import pytest
from moto.moto_api._internal import mock_random

from dbops.sandbox.sqs_server import speed_up_moto_sqs


def test_clock_and_names_match_motos_own() -> None:
    speed_up_moto_sqs()
    before = utils.unix_time_millis()
    fast = models.unix_time_millis()
    after = utils.unix_time_millis()
    assert before <= fast <= after + 1  # the same clock, read between two slow reads
    assert abs(models.unix_time() - utils.unix_time()) < 1
    moment = dt.datetime(2026, 12, 1, 12, 0, 0)
    assert models.unix_time(moment) == utils.unix_time(moment)
    assert models.unix_time_millis(moment) == utils.unix_time_millis(moment)
    for name in ("ApproximateNumberOfMessages", "VisibilityTimeout", "RedrivePolicy", ""):
        assert models.camelcase_to_underscores(name) == utils.camelcase_to_underscores(name)


def test_attribute_reads_match_motos_own() -> None:
    """The queue-attribute read (once, not three times per name) and the retention check
    (without reading every attribute) answer what moto's own functions answer."""
    speed_up_moto_sqs()
    slow = models._dbops_slow  # type: ignore[attr-defined]
    backend = models.sqs_backends["123456789012"]["us-east-1"]
    name = f"attrs-{uuid.uuid4().hex[:10]}"
    dlq = backend.create_queue(f"{name}-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq.queue_arn, "maxReceiveCount": 3})
    queue = backend.create_queue(name, RedrivePolicy=policy, MessageRetentionPeriod="60")
    try:
        for i in range(5):
            backend.send_message(name, f"m{i}")
        asked = [
            ["ApproximateNumberOfMessages"],
            ["VisibilityTimeout", "RedrivePolicy", "ApproximateNumberOfMessagesNotVisible"],
            ["FifoQueue", "ContentBasedDeduplication"],  # FIFO-only: absent on this queue
            ["MessageRetentionPeriod", "MessageRetentionPeriod"],
            ["All"],
            [],
        ]
        for names in asked:
            fast = backend.get_queue_attributes(name, names)
            assert list(fast.items()) == list(
                slow["get_queue_attributes"](backend, name, names).items()
            )
        for bad in (["Bogus"], ["VisibilityTimeout", ""]):
            with pytest.raises(models.InvalidAttributeName) as fast_error:
                backend.get_queue_attributes(name, bad)
            with pytest.raises(models.InvalidAttributeName) as slow_error:
                slow["get_queue_attributes"](backend, name, bad)
            assert str(fast_error.value) == str(slow_error.value)
        message = queue._messages[0]
        # Ages well clear of the 60 s retention on both sides: the two checks read the clock
        # one after the other, so an age 1 s from it could flip between them on a busy machine.
        for age in (0, 30, 90, 3600):
            message.sent_timestamp = int((time.time() - age) * 1000)
            fast_valid = backend.is_message_valid_based_on_retention_period(name, message)
            slow_valid = slow["is_message_valid_based_on_retention_period"](backend, name, message)
            assert fast_valid == slow_valid == (age < 60), age
        letters_digits = set(string.ascii_letters + string.digits)
        for kwargs, length, pool in [
            ({}, 20, letters_digits),
            ({"length": 52}, 52, letters_digits),  # the request id
            ({"include_digits": False, "lower_case": True}, 20, set(string.ascii_lowercase)),
        ]:
            texts = [mock_random.get_random_string(**kwargs) for _ in range(50)]
            assert all(len(text) == length and set(text) <= pool for text in texts), kwargs
        handles = [models.generate_receipt_handle() for _ in range(20)]
        assert all(len(h) == 185 and set(h) <= set(string.ascii_lowercase) for h in handles)
        assert len(set(handles)) == 20
    finally:
        backend.delete_queue(name)
        backend.delete_queue(f"{name}-dlq")
