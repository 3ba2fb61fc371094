"""Describe the effective configuration without revealing secrets."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr

from dbops.settings import Settings, mask_secret


class ConfigValue(BaseModel):
    """One row of `dbops config show -o json`."""

    name: str
    value: str | int | float | bool | None
    source: str
    secret: bool = False


def describe(*, settings: Settings, origins: dict[str, str]) -> list[ConfigValue]:
    rows = []
    for name in Settings.model_fields:
        if name == "audit":
            continue
        value = getattr(settings, name)
        secret = isinstance(value, SecretStr)
        if secret:
            value = mask_secret(value.get_secret_value())
        rows.append(
            ConfigValue(name=name, value=value, source=origins.get(name, "default"), secret=secret)
        )
    rows.append(
        ConfigValue(
            name="transport (effective)", value=settings.effective_transport, source="derived"
        )
    )
    return rows
