"""Redaction of secrets in arguments, identifiers and free text (DESIGN.md section 5.5)."""

from __future__ import annotations

import re
from typing import Any

from dbops.redaction import redact_urls

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_?key|service_?key|webhook|dsn)", re.I)
_MASKED = re.compile(r"\*{4}[^*]{0,4}")


def mask(value: str) -> str:
    """`****` plus at most the last 4 characters (none for short values)."""
    return "****" + value[-4:] if len(value) >= 12 else "****"


def mask_identifier(identifier: str) -> str:
    """`api_key:<key>` -> `api_key:****abcd`; other identifiers unchanged."""
    kind, sep, rest = identifier.partition(":")
    if sep and kind == "api_key":
        if _MASKED.fullmatch(rest):  # already masked: keep it (masking is idempotent)
            return identifier
        return f"api_key:{mask(rest)}"
    return identifier


def redact_text(text: str) -> str:
    """Free text safe to show or log: URL userinfo and key=value passwords (see
    `dbops.redaction`), API keys in identifiers and Slack webhook paths masked."""
    text = redact_urls(text)
    text = re.sub(r"api_key:([^\s,;\"']+)", lambda m: mask_identifier(m.group(0)), text)
    return re.sub(r"hooks\.slack\.com/\S+", "hooks.slack.com/****", text)


def redact_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Copy of `arguments` safe for the action log."""
    safe: dict[str, Any] = {}
    for key, value in arguments.items():
        if _SECRET_KEY.search(key) and key not in {"identifier"}:
            safe[key] = "****" if value not in (None, "", False) else value
        elif isinstance(value, str):
            safe[key] = redact_text(value)
        elif isinstance(value, list | tuple):
            safe[key] = [redact_text(v) if isinstance(v, str) else v for v in value]
        elif isinstance(value, dict):
            safe[key] = redact_arguments(value)
        else:
            safe[key] = value
    return safe
