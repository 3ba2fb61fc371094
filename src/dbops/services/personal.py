"""Personal-data masking moved to `dbops.services.redact`; these names stay importable."""

from __future__ import annotations

from dbops.services.redact import (
    JSON_MAX_DEPTH,
    MASK,
    NOT_JSON,
    is_personal_key,
    json_depth_ok,
    load_json,
    mask_body,
    mask_optional,
    mask_personal,
    mask_text,
)

__all__ = [
    "JSON_MAX_DEPTH",
    "MASK",
    "NOT_JSON",
    "is_personal_key",
    "json_depth_ok",
    "load_json",
    "mask_body",
    "mask_optional",
    "mask_personal",
    "mask_text",
]
