"""Configuration: one pydantic-settings model, profiles in a TOML file.

Precedence: flag > environment > profile (`config.toml`) > default. Built lazily by
`load_settings()`; nothing here runs at import time. Secrets are `SecretStr` and are
never taken from command-line flag values.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dbops.config_files import (  # re-exported: the public names of dbops.settings
    config_dir,
    config_path,
    data_dir,
    mask_secret,
    profile_values,
    read_config_file,
    write_profile,
)
from dbops.errors import ConfigError

__all__ = [
    "AuditThresholds",
    "Settings",
    "config_dir",
    "config_path",
    "data_dir",
    "load_settings",
    "mask_secret",
    "parse_env_text",
    "profile_values",
    "read_config_file",
    "write_profile",
]

SECRET_FIELDS = ("database_url", "supabase_service_role_key", "slack_webhook_url")


# The profile's values for the Settings being built. (A Settings subclass per build would
# carry them too, but pydantic builds a new validator for every class: ~10 ms each.)
_PROFILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("dbops_profile", default=None)


class _ProfileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class AuditThresholds(BaseModel):
    """Audit thresholds; each can be set per profile under `[profiles.NAME.audit]`."""

    model_config = ConfigDict(extra="ignore")

    stale_jobs_critical: int = 10
    orphaned_minutes: int = 30
    error_rate_warning: float = 5.0
    error_rate_critical: float = 10.0
    backlog_warning: int = 100
    backlog_critical: int = 500
    dlq_warning: int = 1
    dlq_critical: int = 10
    ratio_429_warning: float = 5.0
    submitting_minutes: int = 15
    db_latency_warning_ms: float = 250.0
    job_timeout_seconds: int | None = None
    worker_dead_minutes: int = 2
    cleanup_overdue_hours: int = 24
    recovery_cap: int = 3


class Settings(BaseSettings):
    """Effective configuration for one dbops invocation."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    profile: str | None = None
    transport: Literal["auto", "postgres", "supabase"] = "auto"
    database_url: SecretStr | None = Field(
        default=None, validation_alias=_env("DATABASE_URL", "DBOPS_DATABASE_URL")
    )
    supabase_url: str | None = Field(
        default=None, validation_alias=_env("SUPABASE_URL", "DBOPS_SUPABASE_URL")
    )
    supabase_service_role_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SERVICE_KEY"),
    )
    sqs_queue_url: str | None = Field(default=None, validation_alias=_env("SQS_QUEUE_URL"))
    sqs_dlq_url: str | None = Field(default=None, validation_alias=_env("SQS_DLQ_URL"))
    aws_region: str | None = Field(
        default=None, validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_profile: str | None = Field(default=None, validation_alias=_env("AWS_PROFILE"))
    aws_endpoint_url_sqs: str | None = Field(
        default=None, validation_alias=_env("AWS_ENDPOINT_URL_SQS")
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_WEBHOOK_URL")
    )
    stale_threshold_minutes: int = Field(
        default=10, ge=1, validation_alias=_env("STALE_THRESHOLD_MINUTES")
    )
    dlq_alert_threshold: int = Field(default=1, ge=1, validation_alias=_env("DLQ_ALERT_THRESHOLD"))
    operator: str | None = Field(default=None, validation_alias=_env("DBOPS_OPERATOR"))
    connect_timeout_seconds: int = Field(
        default=5, ge=1, validation_alias=_env("DBOPS_CONNECT_TIMEOUT")
    )
    statement_timeout_ms: int = Field(
        default=30000, ge=0, validation_alias=_env("DBOPS_STATEMENT_TIMEOUT_MS")
    )
    # The longest an SQS receive may wait for messages (long polling). dbops long-polls
    # 1 s before it takes an empty receive as "the queue is empty"; real SQS needs that (a
    # short poll samples a subset of its servers), an emulator (LocalStack, moto) does not.
    sqs_long_poll_seconds: int | None = Field(
        default=None, ge=0, le=20, validation_alias=_env("DBOPS_SQS_LONG_POLL_SECONDS")
    )
    sandbox: bool = False
    audit: AuditThresholds = Field(default_factory=AuditThresholds)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        profile = _ProfileSource(settings_cls, _PROFILE_VALUES.get() or {})
        return (init_settings, env_settings, profile)

    @property
    def effective_transport(self) -> Literal["postgres", "supabase"] | None:
        if self.transport == "postgres":
            return "postgres" if self.database_url else None
        if self.transport == "supabase":
            return "supabase" if self.supabase_url and self.supabase_service_role_key else None
        if self.database_url:
            return "postgres"
        if self.supabase_url and self.supabase_service_role_key:
            return "supabase"
        return None


# Environment names per field, for `config show` origins and for redaction.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "database_url": ("DATABASE_URL", "DBOPS_DATABASE_URL"),
    "supabase_url": ("SUPABASE_URL", "DBOPS_SUPABASE_URL"),
    "supabase_service_role_key": ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SERVICE_KEY"),
    "sqs_queue_url": ("SQS_QUEUE_URL",),
    "sqs_dlq_url": ("SQS_DLQ_URL",),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_profile": ("AWS_PROFILE",),
    "aws_endpoint_url_sqs": ("AWS_ENDPOINT_URL_SQS",),
    "slack_webhook_url": ("SLACK_WEBHOOK_URL",),
    "stale_threshold_minutes": ("STALE_THRESHOLD_MINUTES",),
    "dlq_alert_threshold": ("DLQ_ALERT_THRESHOLD",),
    "operator": ("DBOPS_OPERATOR",),
    "connect_timeout_seconds": ("DBOPS_CONNECT_TIMEOUT",),
    "statement_timeout_ms": ("DBOPS_STATEMENT_TIMEOUT_MS",),
    "sqs_long_poll_seconds": ("DBOPS_SQS_LONG_POLL_SECONDS",),
    "transport": ("DBOPS_TRANSPORT",),
}


def _origin(
    field: str,
    flags: dict[str, Any],
    profile_vals: dict[str, Any],
    name: str,
    from_file: dict[str, Any],
) -> str:
    if field in flags:
        return "flag"
    if field in from_file:
        return "env-file"
    for env_name in ENV_NAMES.get(field, ()):
        if os.environ.get(env_name):
            return f"env:{env_name}"
    if field in profile_vals:
        return f"profile:{name}"
    return "default"


def parse_env_text(text: str) -> dict[str, Any]:
    """KEY=VALUE lines (an env file) -> settings fields, for `--env-file`."""
    by_env = {env: field for field, names in ENV_NAMES.items() for env in names}
    values: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip().strip('"').strip("'")
        field = by_env.get(key) or (key.lower() if key.lower() in Settings.model_fields else None)
        if field:
            values[field] = value
    return values


def load_settings(
    *,
    profile: str | None = None,
    flags: dict[str, Any] | None = None,
    env_file_values: dict[str, Any] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Build the effective settings and, per field, where its value came from."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    from_file = {k: v for k, v in (env_file_values or {}).items() if k not in flags}
    profile = profile or os.environ.get("DBOPS_PROFILE") or None
    values = profile_values(profile)
    if os.environ.get("DBOPS_TRANSPORT") and "transport" not in flags:
        flags["transport"] = os.environ["DBOPS_TRANSPORT"]
    name = profile or read_config_file().get("default_profile") or "default"

    bound = _PROFILE_VALUES.set(values)
    try:
        settings = Settings(**from_file, **flags, profile=profile)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(
            f"invalid configuration value for {where}: {first.get('msg')}",
            hint=f"check the environment and {config_path()}",
        ) from None
    finally:
        _PROFILE_VALUES.reset(bound)
    origins = {f: _origin(f, flags, values, name, from_file) for f in Settings.model_fields}
    return settings, origins
