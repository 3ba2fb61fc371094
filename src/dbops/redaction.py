"""Secrets inside URLs and connection strings (architecture.md section 5.5).

A leaf module (only `re` and `urllib.parse`) shared by the adapters, the services and the
CLI, so that every message is built the same way:

- `strip_userinfo(url)`: a URL with its userinfo (`user:password@`) replaced by `****@`,
  where the userinfo is everything between `scheme://` and the **last** `@`. A password
  with an unencoded `@ : / ? # & %` or spaces therefore never survives, whichever way a
  parser would have split it. Do this before anything else is done with a URL that may
  reach a message or the action log (host, port and path come from the stripped URL).
- `redact_urls(text)`: the same for URLs inside free text (the userinfo ends at the last
  `@` before whitespace), plus `password=...` in key=value connection strings.
- `dsn_secrets(dsn)`: every string a connection string may carry as its password,
  however it is (mis)written: URL userinfo (raw and percent-decoded), `?password=`,
  and key=value `password=` (quoted, unquoted, unterminated).
- `scrub_fragments(text, secrets)`: removes from text every run of 4 or more characters
  that also occurs in a secret (case-insensitively). A libpq message about a mangled
  DSN quotes pieces of it (`failed to resolve host 'cret'` for a password `se@cret`);
  this catches them without knowing how the DSN was split.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "****"
FRAGMENT = 4  # the shortest part of a secret that must never appear in output

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
# One URL value: the userinfo runs to the last `@` (a password may contain spaces).
_ONE_URL = re.compile(rf"^(\s*{_SCHEME})(.*)@", re.S)
# URLs in free text: the userinfo runs to the last `@` before whitespace.
_URLS_IN_TEXT = re.compile(rf"(?<![A-Za-z0-9+.\-])({_SCHEME})[^\s]*@")
# key=value connection strings: password='quoted' | 'unterminated... | bare
_KV_PASSWORD = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'|'.*|[^\s]+)""", re.I | re.S)
_QUERY_PASSWORD = re.compile(r"[?&]password=([^&#]*)", re.I)


def strip_userinfo(url: str) -> str:
    """`scheme://user:p@ss/w@host:5432/db` -> `scheme://****@host:5432/db` (and a
    `?password=` query parameter masked too)."""
    url = _ONE_URL.sub(lambda m: f"{m.group(1)}{MASK}@", url, count=1)
    return _QUERY_PASSWORD.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + MASK, url)


_KV_PASSWORD_LENIENT = re.compile(
    r"""password\s*=\s*('(?:[^'\\]|\\.)*'|'.*|.*?)(?=\s+[A-Za-z_]+\s*=|\s*$)""", re.I | re.S
)


def strip_password(dsn: str) -> str:
    """A connection string (URL or key=value) with no password left in it, to parse for
    host, port and database name."""
    if _ONE_URL.match(dsn):
        return strip_userinfo(dsn)
    return _KV_PASSWORD_LENIENT.sub("", dsn)


def looks_unencoded(dsn: str) -> bool:
    """True when a URL's userinfo holds characters a URL parser splits on (`@ / ? #`,
    whitespace, a `%` that starts no escape): the password needs percent-encoding."""
    match = _ONE_URL.match(dsn)
    if not match:
        return False
    userinfo = match.group(2)
    return bool(re.search(r"[@/?#\s]|%(?![0-9A-Fa-f]{2})", userinfo))


def redact_urls(text: str) -> str:
    """Userinfo of every URL in free text, and key=value passwords, replaced by `****`."""
    text = _URLS_IN_TEXT.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _QUERY_PASSWORD.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + MASK, text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def _unquote_kv(value: str) -> str:
    if value.startswith("'"):
        value = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
        value = re.sub(r"\\(.)", r"\1", value)
    return value


def dsn_secrets(dsn: str) -> list[str]:
    """Every string `dsn` may carry as a password (see the module docstring)."""
    found: list[str] = []
    match = _ONE_URL.match(dsn)
    if match:
        _user, sep, password = match.group(2).partition(":")
        if sep and password:
            found += [password, unquote(password)]
    for value in _QUERY_PASSWORD.findall(dsn):
        found += [value, unquote(value)]
    for kv in _KV_PASSWORD_LENIENT.finditer(dsn):
        raw = kv.group(1)
        found += [raw, _unquote_kv(raw)]
    unique: list[str] = []
    for value in found:
        value = value.strip()
        if value and value not in unique:
            unique.append(value)
    return unique


def _fold(text: str) -> str:
    """Lower case, one character for one (so positions line up with the original)."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _marks(text: str, grams: set[str]) -> list[bool]:
    folded = _fold(text)
    marked = [False] * len(text)
    for i in range(len(text) - FRAGMENT + 1):
        if folded[i : i + FRAGMENT] in grams:
            for j in range(i, i + FRAGMENT):
                marked[j] = True
    return marked


def _replace_runs(text: str, marked: list[bool], by: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if marked[i]:
            while i < len(text) and marked[i]:
                i += 1
            out.append(by)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def scrub_fragments(text: str, secrets: Iterable[str]) -> str:
    """`text` without any run of >= 4 characters that also occurs in one of `secrets`."""
    grams = {
        folded[i : i + FRAGMENT]
        for secret in secrets
        if len(secret) >= FRAGMENT
        for folded in (_fold(secret),)
        for i in range(len(folded) - FRAGMENT + 1)
    }
    if not grams or not text:
        return text
    by = MASK
    while True:
        marked = _marks(text, grams)
        if not any(marked):
            return text
        text = _replace_runs(text, marked, by)
        by = ""  # a secret that itself contains `****`: drop what is left outright
