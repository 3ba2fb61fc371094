"""Describe the effective configuration without revealing secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, SecretStr

from dbops.redaction import strip_userinfo

if TYPE_CHECKING:  # pydantic-settings stays off the `dbops config --help` path
    from dbops.settings import Settings

# Where a secret came from, as `config show` says it (never any part of the value).
_SECRET_ORIGINS = {"env": "environment", "profile": "profile", "env-file": "env-file"}


class ConfigValue(BaseModel):
    """One row of `dbops config show -o json`.

    `value` is the effective value; for a secret (`secret: true`) it is only whether it is
    set and where from: `set (environment)`, `set (profile)`, `set (env-file)` or
    `not set`. URLs are shown with any userinfo replaced by `****`.
    """

    name: str
    value: str | int | float | bool | None
    source: str
    secret: bool = False


def secret_state(value: SecretStr | None, origin: str) -> str:
    """`set (environment)` / `set (profile)` / `set (env-file)` / `not set`."""
    if value is None or not value.get_secret_value():
        return "not set"
    kind = origin.split(":", 1)[0]
    return f"set ({_SECRET_ORIGINS.get(kind, kind)})"


def describe(*, settings: Settings, origins: dict[str, str]) -> list[ConfigValue]:
    from dbops.settings import SECRET_FIELDS, Settings

    rows = []
    for name in Settings.model_fields:
        if name == "audit":
            continue
        value = getattr(settings, name)
        origin = origins.get(name, "default")
        secret = name in SECRET_FIELDS or isinstance(value, SecretStr)
        if secret:
            value = secret_state(value, origin)
        elif isinstance(value, str) and "://" in value:
            value = strip_userinfo(value)
        rows.append(ConfigValue(name=name, value=value, source=origin, secret=secret))
    rows.append(
        ConfigValue(
            name="transport (effective)", value=settings.effective_transport, source="derived"
        )
    )
    return rows
