"""Wiring: builds settings and adapters for the current invocation (lazily).

The only CLI module that touches adapters, and only inside functions, so that
`dbops --help` never imports boto3, psycopg or supabase.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dbops.cli._state import State
from dbops.errors import ConfigError, DbopsError, MissingExtraError
from dbops.ports import Queues, Store

if TYPE_CHECKING:  # pydantic-settings loads only when a command needs its settings
    from dbops.settings import Settings


def state() -> Any:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    if root is None or not isinstance(root.obj, State):
        return State()
    return root.obj


def _cached(key: str, build: Any) -> Any:
    st = state()
    if key not in st.cache:
        st.cache[key] = build()
    return st.cache[key]


def _env_file_values() -> dict[str, Any]:
    from dbops.settings import parse_env_text

    path = state().env_file
    if not path:
        return {}
    try:
        text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read --env-file {path}: {exc.strerror}") from None
    return parse_env_text(text)


def settings_and_origins() -> tuple[Settings, dict[str, str]]:
    def build() -> tuple[Settings, dict[str, str]]:
        from dbops.settings import load_settings

        loaded = load_settings(
            profile=state().profile,
            flags=state().setting_flags,
            env_file_values=_env_file_values(),
        )
        _warn_profile_overridden(loaded[1])
        return loaded

    return _cached("settings", build)


_CONNECTION_FIELDS = (
    "database_url",
    "supabase_url",
    "sqs_queue_url",
    "sqs_dlq_url",
    "aws_endpoint_url_sqs",
)


def _warn_profile_overridden(origins: dict[str, str]) -> None:
    """An explicit --profile whose connection settings the environment overrides is a
    classic way to hit production while meaning the sandbox: say so, loudly."""
    profile = state().profile
    if not profile:
        return
    from dbops.config_files import profile_values

    mine = profile_values(profile)
    overridden = [
        origins[f].removeprefix("env:")
        for f in _CONNECTION_FIELDS
        if f in mine and origins.get(f, "").startswith("env:")
    ]
    if overridden:
        from dbops.cli.output import message

        message(
            f"warning: {', '.join(overridden)} from the environment override profile "
            f"'{profile}' (unset them to use the profile's values)",
            style="yellow",
        )


def settings() -> Settings:
    return settings_and_origins()[0]


def secret_values() -> list[str]:
    """Every configured secret (and DSN passwords), for scrubbing free text."""
    from dbops.settings import SECRET_FIELDS

    try:
        current = settings()
    except DbopsError:
        return []
    from dbops.redaction import dsn_secrets

    values: list[str] = []
    for name in SECRET_FIELDS:
        secret = getattr(current, name)
        if secret is not None and secret.get_secret_value():
            values.append(secret.get_secret_value())
    if current.database_url is not None:
        values += dsn_secrets(current.database_url.get_secret_value())
    return [v for v in values if len(v) >= 4]


def secret_fragments() -> list[str]:
    """The secrets no part of which (4+ characters) may be shown: the database password
    (however the DSN is written), the service-role key, the webhook's token path. (Whole
    URLs are not listed: their `https`, host and port are not secret.)"""
    from dbops.redaction import dsn_secrets

    try:
        current = settings()
    except DbopsError:
        return []
    values: list[str] = []
    if current.database_url is not None:
        values += dsn_secrets(current.database_url.get_secret_value())
    if current.supabase_service_role_key is not None:
        values.append(current.supabase_service_role_key.get_secret_value())
    if current.slack_webhook_url is not None:
        _, _, path = current.slack_webhook_url.get_secret_value().partition("/services/")
        values.append(path)
    return [v for v in values if len(v) >= 4]


def safe_text(text: str) -> str:
    """Free text with URL userinfo and every part (4+ characters) of a secret removed."""
    from dbops.redaction import redact_urls, scrub_fragments

    text = " ".join(text.split())
    for value in secret_values():
        text = text.replace(value, "****")
    return scrub_fragments(redact_urls(text), secret_fragments())


def store(*, required: bool = True) -> Store:
    def build() -> Store:
        current = settings()
        transport = current.effective_transport
        if transport == "postgres":
            assert current.database_url is not None
            from dbops.adapters.postgres import PostgresStore

            built: Store = PostgresStore(
                current.database_url.get_secret_value(),
                connect_timeout=current.connect_timeout_seconds,
                statement_timeout_ms=current.statement_timeout_ms,
            )
        elif transport == "supabase":
            assert current.supabase_url and current.supabase_service_role_key
            from dbops.adapters.supabase import SupabaseStore

            built = SupabaseStore(
                current.supabase_url, current.supabase_service_role_key.get_secret_value()
            )
        else:
            raise ConfigError(
                "no database configured",
                hint="set DATABASE_URL, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, "
                "or use --profile sandbox after `dbops sandbox up`",
            )
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.find_root().call_on_close(built.close)
        return built

    return _cached("store", build)


def queues() -> Queues:
    def build() -> Queues:
        current = settings()
        from dbops.adapters.sqs import SqsQueues

        return SqsQueues(
            region=current.aws_region,
            endpoint=current.aws_endpoint_url_sqs,
            profile=current.aws_profile,
            sandbox=current.sandbox,
            max_wait_seconds=current.sqs_long_poll_seconds,
        )

    return _cached("queues", build)


def overview_sources() -> dict[str, Any]:
    """Store, queues, settings and queue URLs for `dbops.services.overview.gather`; a
    source that is not configured is None (the frame names it in `errors`)."""
    current = settings()
    configured_db = current.effective_transport in ("postgres", "supabase")
    return {
        "store": store() if configured_db else None,
        "queues": queues() if (current.sqs_queue_url or current.sqs_dlq_url) else None,
        "settings": current,
        "main_url": current.sqs_queue_url,
        "dlq_url": current.sqs_dlq_url,
    }


def main_queue_url() -> str:
    url = settings().sqs_queue_url
    if not url:
        raise ConfigError("no main queue configured", hint="set SQS_QUEUE_URL or use a profile")
    return url


def dlq_url() -> str:
    url = settings().sqs_dlq_url
    if not url:
        raise ConfigError("no dead-letter queue configured", hint="set SQS_DLQ_URL or use --queue")
    return url


def slack_notifier() -> Any:
    """The Slack webhook notifier (a `dbops.services.slack.Notifier`); exit 3 when unset."""
    secret = settings().slack_webhook_url
    url = secret.get_secret_value().strip() if secret is not None else ""
    if not url:
        raise ConfigError(
            "--notify slack needs SLACK_WEBHOOK_URL",
            hint="set it in the environment, a profile or --env-file (never as a flag)",
        )
    from dbops.adapters.webhook import WebhookNotifier

    return WebhookNotifier(url, name="Slack webhook")


def operator() -> str:
    import getpass

    configured = settings().operator
    if configured:
        return configured
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def require_sandbox_extra() -> None:
    try:
        import moto  # noqa: F401
        import pgserver  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "the sandbox needs the 'sandbox' extra",
            hint="install with `pip install 'dbops[sandbox]'` or `uv sync`",
        ) from None
