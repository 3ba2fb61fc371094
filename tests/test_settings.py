import pytest

from dbops.errors import ConfigError
from dbops.settings import load_settings, mask_secret, parse_env_text, write_profile


def test_defaults_without_any_configuration():
    settings, origins = load_settings()
    assert settings.database_url is None
    assert settings.stale_threshold_minutes == 10
    assert settings.dlq_alert_threshold == 1
    assert settings.effective_transport is None
    assert origins["stale_threshold_minutes"] == "default"


def test_precedence_flag_over_env_over_profile_over_default(monkeypatch):
    write_profile(
        "ops",
        {"aws_region": "eu-west-1", "sqs_queue_url": "http://q/profile", "dlq_alert_threshold": 7},
    )
    monkeypatch.setenv("SQS_QUEUE_URL", "http://q/env")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    settings, origins = load_settings(profile="ops", flags={"aws_region": "ap-south-1"})
    assert settings.aws_region == "ap-south-1" and origins["aws_region"] == "flag"
    assert (
        settings.sqs_queue_url == "http://q/env" and origins["sqs_queue_url"] == "env:SQS_QUEUE_URL"
    )
    assert settings.dlq_alert_threshold == 7 and origins["dlq_alert_threshold"] == "profile:ops"
    assert (
        settings.stale_threshold_minutes == 10 and origins["stale_threshold_minutes"] == "default"
    )


def test_profile_from_environment_variable(monkeypatch):
    write_profile("sandbox", {"sqs_dlq_url": "http://q/dlq"})
    monkeypatch.setenv("DBOPS_PROFILE", "sandbox")
    settings, _ = load_settings()
    assert settings.sqs_dlq_url == "http://q/dlq"


def test_unknown_profile_is_a_config_error():
    write_profile("one", {})
    with pytest.raises(ConfigError) as caught:
        load_settings(profile="two")
    assert "two" in caught.value.message and "one" in caught.value.message


def test_supabase_service_key_fallback_and_transport_choice(monkeypatch):
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "legacy-service-key-value")
    settings, _ = load_settings()
    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == "legacy-service-key-value"
    assert settings.effective_transport == "supabase"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    assert load_settings()[0].effective_transport == "postgres"
    monkeypatch.setenv("DBOPS_TRANSPORT", "supabase")
    assert load_settings()[0].effective_transport == "supabase"


def test_invalid_values_are_config_errors(monkeypatch):
    monkeypatch.setenv("STALE_THRESHOLD_MINUTES", "soon")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "stale_threshold_minutes" in caught.value.message.lower()


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", 0), ("20", 20)])
def test_sqs_long_poll_seconds_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("DBOPS_SQS_LONG_POLL_SECONDS", raising=False)
    else:
        monkeypatch.setenv("DBOPS_SQS_LONG_POLL_SECONDS", value)
    settings, origins = load_settings()
    assert settings.sqs_long_poll_seconds == expected
    assert origins["sqs_long_poll_seconds"] == (
        "default" if value is None else "env:DBOPS_SQS_LONG_POLL_SECONDS"
    )


@pytest.mark.parametrize("value", ["21", "-1", "soon"])
def test_sqs_long_poll_seconds_out_of_range_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv("DBOPS_SQS_LONG_POLL_SECONDS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "sqs_long_poll_seconds" in caught.value.message.lower()


def test_env_file_text_maps_backend_names():
    values = parse_env_text(
        "# comment\nexport DATABASE_URL='postgresql://u:pw@h/db'\nSUPABASE_SERVICE_KEY=k\nOTHER=1\n"
    )
    assert values == {"database_url": "postgresql://u:pw@h/db", "supabase_service_role_key": "k"}


def test_mask_secret_shows_no_part_of_the_secret():
    assert mask_secret("abcdefghijklmnop") == "****"
    assert mask_secret("short") == "****"
    assert mask_secret(None) is None


def test_profile_audit_thresholds(monkeypatch):
    write_profile("strict", {"audit": {"backlog_warning": 5}})
    settings, _ = load_settings(profile="strict")
    assert settings.audit.backlog_warning == 5
    assert settings.audit.backlog_critical == 500
