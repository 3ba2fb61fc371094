"""Redaction: secrets in arguments, identifiers and free text (architecture.md section 5.5), and
personal data in message bodies, reasons and attributes.

Secrets: `mask`, `mask_identifier`, `redact_text`, `redact_arguments`.

Personal data (`mask_text`, `mask_personal`, `mask_body`, `mask_optional`, `load_json`,
the attribute maskers): masked in linear time. Anyone who can put a message on a queue
controls what dbops reads, so every function here is linear in its input (architecture.md
invariant 7) and never raises on data:

- emails are found from each `@` (never by trying every start position): the domain is
  read forwards from the `@` and the local part backwards (on the reversed text), each
  character of the input being read a bounded number of times;
- phone numbers are read as chains of digits and separators with possessive quantifiers
  (no backtracking), starting only where no word character, `+` or `-` precedes them;
- JSON is parsed once and nested values deeper than `JSON_MAX_DEPTH` are treated as text
  (parsing, masking and rendering recurse; a body of 100,000 `[` must not).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import re
from collections.abc import Iterator
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


# --------------------------------------------------------------------------- personal data
MASK = "****"
JSON_MAX_DEPTH = 100

_PERSONAL_KEY = re.compile(
    r"(^|_)(e?_?mail|email_?address|phone|phone_?number|mobile|telephone|tel|fax|address|"
    r"street|address_?line\d*|postcode|postal_?code|zip|zip_?code|ssn|dob|birth_?date|"
    r"date_?of_?birth|ip_?address)($|_)",
    re.I,
)
_PERSONAL_NAMES = {
    "name",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "full_name",
    "fullname",
    "given_name",
    "family_name",
    "surname",
    "middle_name",
    "customer_name",
    "contact_name",
    "display_name",
    "username",
    "user_name",
    "recipient",
    "recipient_name",
    "owner_name",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# user@example.com: the `@` and domain (forwards), then the local part (backwards). Word
# characters are Unicode's (`jöhn_doe@exämple.de` is masked whole).
_EMAIL_TAIL = re.compile(r"@[\w.-]+\.[^\W\d_]{2,}")
_EMAIL_LOCAL = re.compile(r"[\w.%+-]+")
# Phone numbers: a chain of digits joined by separators, read once (possessive: no
# backtracking); the callback then keeps the longest part that ends in a digit not followed
# by a word character or `-`.
_PHONE_CHAIN = re.compile(r"(?<![\w+-])[+(]?\d(?:[\s().-]*+\d){7,}+")  # 8 digits or more
_WORD_OR_DASH = re.compile(r"[\w-]")
_PHONE_END = re.compile(r".*\d(?=[\s().])", re.S)
_DIGIT = re.compile(r"\d")
_PHONE_LOCAL = re.compile(r"\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}|\d{3}[\s.-]\d{3}[\s.-]\d{4}")


def is_personal_key(key: str) -> bool:
    normal = _CAMEL.sub("_", key).lower().replace("-", "_")
    return normal in _PERSONAL_NAMES or bool(_PERSONAL_KEY.search(normal))


def _mask_emails(text: str) -> str:
    if "@" not in text:
        return text
    size = len(text)
    reverse = text[::-1]
    parts: list[str] = []
    done = 0  # everything before this offset is settled (copied or masked)
    for tail in _EMAIL_TAIL.finditer(text):
        at = tail.start()
        # The local part: the run of local characters that ends just before the `@`, read
        # on the reversed text and never reaching back into what is already settled.
        local = _EMAIL_LOCAL.match(reverse, size - at, size - done)
        if local is None:
            continue
        start = at - (local.end() - local.start())
        parts.append(text[done:start])
        parts.append(MASK)
        done = tail.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _phone(match: re.Match[str]) -> str:
    text = match.string
    start, end = match.span()
    if end < len(text) and _WORD_OR_DASH.match(text, end):
        # `...4567x`: the number is the part before the last digit followed by a separator.
        shorter = _PHONE_END.match(text, start, end)
        if shorter is None:
            return match.group(0)
        return _phone_number(text[start : shorter.end()]) + text[shorter.end() : end]
    return _phone_number(match.group(0))


def _phone_number(text: str) -> str:
    digits = sum(1 for _ in itertools.islice(_DIGIT.finditer(text), 16))
    if not 8 <= digits <= 15:
        return text
    if text.startswith("+") or _PHONE_LOCAL.fullmatch(text):
        return MASK
    return text


def mask_text(text: str) -> str:
    """Mask email addresses and phone numbers (international `+...`, or `(555) 123-4567` /
    `555-123-4567` shapes) inside free text; ids, dates and plain numbers are left alone.
    Linear in the length of `text`."""
    return _PHONE_CHAIN.sub(_phone, _mask_emails(text))


def mask_personal(value: Any, key: str | None = None, *, _depth: int = 0) -> Any:
    """A copy of `value` with personal-looking fields and patterns masked.

    Containers nested deeper than `JSON_MAX_DEPTH` are replaced by `****` as a whole
    (never returned unmasked, never a RecursionError)."""
    if key is not None and is_personal_key(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, dict | list) and _depth >= JSON_MAX_DEPTH:
        return MASK
    if isinstance(value, dict):
        return {k: mask_personal(v, str(k), _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_personal(v, _depth=_depth + 1) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def json_depth_ok(value: Any, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether containers in `value` nest at most `limit` deep (iterative: any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


class _NotJson:
    pass


NOT_JSON: Any = _NotJson()


def load_json(text: str) -> Any:
    """The JSON value of `text`, or `NOT_JSON` (not JSON, or nested deeper than
    `JSON_MAX_DEPTH`). Never raises."""
    try:
        if text.count("[") + text.count("{") <= JSON_MAX_DEPTH:
            value = json.loads(text)
        else:
            with _collector_paused():
                value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return NOT_JSON
    return value if json_depth_ok(value) else NOT_JSON


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while a body that may nest thousands deep is parsed.

    The parser recurses once per level, up to the interpreter's limit (where it raises
    RecursionError, which load_json expects). A collection that starts down there runs
    finalizers (of sockets, files, ...) with no stack left; they fail with RecursionError
    too, and Python prints that as "Exception ignored in ..." on stderr, in the middle of
    the command's output.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def mask_body(body: str) -> str:
    """A message body with personal data masked: a JSON body field by field (re-encoded
    only when something was masked), any other text by pattern."""
    value = load_json(body)
    if value is NOT_JSON:
        return mask_text(body)
    masked = mask_personal(value)
    if masked == value:
        return body
    return json.dumps(masked, ensure_ascii=False)


def mask_optional(text: str | None) -> str | None:
    return mask_text(text) if text else text


def _is_binary(data_type: Any) -> bool:
    return str(data_type or "").split(".", 1)[0] == "Binary"


def mask_simple_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """`simple_message_attributes` with personal data masked: every value of an attribute
    whose name looks personal; emails and phones inside text values. Binary values are
    left as they are (base64 text is not personal-looking text)."""
    out: dict[str, Any] = {}
    for name, item in attributes.items():
        value = item.get("value")
        if is_personal_key(name) and value not in (None, ""):
            value = MASK
        elif not _is_binary(item.get("type")):
            value = mask_personal(value)
        out[name] = {**item, "value": value}
    return out


def mask_plain_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """`plain_message_attributes` (the SQS shape) with personal data masked, as
    `mask_simple_attributes` does."""
    out: dict[str, Any] = {}
    for name, item in attributes.items():
        if not isinstance(item, dict):
            out[name] = mask_personal(item, str(name))
            continue
        personal = is_personal_key(str(name))
        masked: dict[str, Any] = {}
        for key, value in item.items():
            if key == "DataType" or value in (None, "", []):
                masked[key] = value
            elif personal:
                masked[key] = [MASK for _ in value] if isinstance(value, list) else MASK
            elif key in ("StringValue", "StringListValues"):
                masked[key] = mask_personal(value)
            else:
                masked[key] = value
        out[name] = masked
    return out


# --------------------------------------------------------------------------- SQL text
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_NUMBER = frozenset("0123456789.")


def _skip_quoted(text: str, start: int, backslash: bool) -> int:
    """Index just past the single-quoted string opening at `start` ('' and, in E'...',
    backslash escapes stay inside); the end of the text when it is not closed."""
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if backslash and c == "\\":
            i += 2
        elif c == "'":
            if i + 1 < n and text[i + 1] == "'":
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def _skip_to(text: str, start: int, end_mark: str) -> int:
    found = text.find(end_mark, start)
    return len(text) if found < 0 else found + len(end_mark)


def mask_sql(query: str | None, *, limit: int = 200) -> str | None:
    """A query safe to show: string literals -> `'?'`, dollar-quoted strings -> `$?$`,
    numbers -> `?`, comments -> `/*?*/`, whitespace folded, cut to `limit` characters
    (`…` marks a cut). Identifiers, keywords and `$1` parameters stay. One pass over at
    most 4 x `limit` characters: linear time whatever the text."""
    if query is None:
        return None
    text = query[: max(limit, 1) * 4]
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            prev = text[i - 1] if i else ""
            escaped = prev in ("E", "e") and (i < 2 or text[i - 2] not in _WORD)
            i = _skip_quoted(text, i, escaped)
            out.append("'?'")
        elif c == '"':  # a quoted identifier: kept
            j = _skip_to(text, i + 1, '"')
            out.append(text[i:j])
            i = j
        elif c == "-" and text.startswith("--", i):
            found = text.find("\n", i)
            i = n if found < 0 else found  # the line break stays, folded with the spaces
            out.append("/*?*/")
        elif c == "/" and text.startswith("/*", i):
            i = _skip_to(text, i + 2, "*/")
            out.append("/*?*/")
        elif c == "$" and i + 1 < n and text[i + 1].isdigit():  # a parameter: kept
            j = i + 1
            while j < n and text[j].isdigit():
                j += 1
            out.append(text[i:j])
            i = j
        elif c == "$":
            j = i + 1
            while j < n and text[j] in _WORD and text[j] != "$":
                j += 1
            if j < n and text[j] == "$":  # $tag$ ... $tag$
                tag = text[i : j + 1]
                i = _skip_to(text, j + 1, tag)
                out.append("$?$")
            else:
                out.append(c)
                i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            j = i + 1
            while j < n and (
                text[j] in _NUMBER
                or (
                    text[j] in "eE" and j + 1 < n and (text[j + 1].isdigit() or text[j + 1] in "+-")
                )
            ):
                j += 2 if text[j] in "eE" and text[j + 1] in "+-" else 1
            out.append("?")
            i = j
        elif c in _WORD:  # a word (identifier or keyword, digits inside it included): kept
            j = i + 1
            while j < n and text[j] in _WORD:
                j += 1
            out.append(text[i:j])
            i = j
        elif c.isspace():
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            out.append(" ")
            i = j
        else:
            out.append(c)
            i += 1
    masked = "".join(out).strip()
    cut = len(masked) > limit or len(query) > len(text)
    return (masked[: limit - 1].rstrip() + "…") if cut else masked
