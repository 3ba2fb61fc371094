"""The sandbox's and the tests' moto speed-ups return what moto's own functions return."""

from __future__ import annotations

import datetime as dt

import moto.core.utils as utils
import moto.sqs.models as models

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
