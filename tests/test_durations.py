import pytest

from dbops.durations import format_duration, parse_duration
from dbops.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 5M ", 300)],
)
def test_parse_duration_accepts_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "-5m", "1.5h", "ten minutes", "10m;drop"])
def test_parse_duration_rejects_malformed_values_naming_them(text):
    with pytest.raises(UsageError) as caught:
        parse_duration(text, option="--older-than")
    assert "--older-than" in caught.value.message
    assert repr(text) in caught.value.message


def test_parse_duration_rejects_zero_and_absurd_values():
    with pytest.raises(UsageError):
        parse_duration("0s")
    assert parse_duration("0s", allow_zero=True) == 0
    with pytest.raises(UsageError):
        parse_duration("99999d")


def test_format_duration():
    assert format_duration(None) == "n/a"
    assert format_duration(45) == "45s"
    assert format_duration(600) == "10m"
    assert format_duration(5400) == "1h30m"
    assert format_duration(90061) == "1d1h"
