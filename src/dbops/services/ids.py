"""Short ids: a whole UUID, or a unique prefix of at least 6 hex characters of one.

The one resolver behind every command that takes an id (docs/jobs.md, "Short ids"):

- `parse_id` is pure: it tells a whole UUID (any form `uuid.UUID` reads) from a prefix (hex
  digits, optionally with the hyphens where a UUID has them: `4443bbfa` and `4443bbfa-0b`)
  and refuses anything else with a usage error (exit 2), as it does a prefix shorter than
  `MIN_PREFIX` hex digits.
- `resolve_ids` turns job, worker or audit run ids into whole ids with one database round trip for
  the whole list (SQL `dbops_resolve_ids`, a primary-key range scan per prefix, over
  direct Postgres and PostgREST alike). Whole UUIDs are passed through unchanged: the
  command that uses them reports an unknown one as before (exit 4).
- `choose` is the rule shared with services that match ids themselves (DLQ message ids
  are matched against the messages a scan saw): no match is exit 4, more than one is
  exit 2 naming up to `MAX_CANDIDATES` of them.

Tables print ids shortened to 8 characters, which is always a valid short id; JSON keeps
whole ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from dbops.errors import NotFoundError, UsageError
from dbops.ports import Store

MIN_PREFIX = 6
MAX_CANDIDATES = 5
IdKind = Literal["job", "worker", "audit_run"]
# How each kind is named in messages ("no job id starts with ...").
KIND_LABEL: dict[str, str] = {"job": "job id", "worker": "worker id", "audit_run": "audit run id"}

# A prefix of the canonical text form (hyphens where a UUID has them), or of the 32 hex
# digits without hyphens.
_CANONICAL = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX = re.compile(r"[0-9a-f]+")
_HEX_OR_HYPHEN = re.compile(r"[0-9a-f-]+")


@dataclass(frozen=True)
class IdRef:
    """One id as given. `form`: "uuid" (`value` is the canonical UUID), "prefix" (`value`
    is its hex digits in lowercase, hyphens dropped) or "other" (`value` as given, matched
    whole: only where `parse_id(..., other_whole=True)` allows it)."""

    given: str
    value: str
    form: Literal["uuid", "prefix", "other"]

    @property
    def full(self) -> bool:
        """A whole id (not a prefix)."""
        return self.form != "prefix"

    def matches(self, candidate: str) -> bool:
        """Does the id `candidate` match: the same id (a UUID in any case or form), or one
        that starts with this prefix (its hex digits)?"""
        if self.form == "other":
            return candidate == self.value
        digits = candidate.strip().lower().replace("-", "")
        if self.form == "uuid":
            return digits == self.value.replace("-", "")
        return digits.startswith(self.value)


def _prefix_digits(text: str) -> str | None:
    """The hex digits of `text` when it is a prefix of a UUID's text form, else None."""
    lowered = text.lower()
    if "-" in lowered:
        if len(lowered) > len(_CANONICAL) or any(
            (c == "-") != (t == "-") for c, t in zip(lowered, _CANONICAL, strict=False)
        ):
            return None
        lowered = lowered.replace("-", "")
    return lowered if len(lowered) <= 32 and _HEX.fullmatch(lowered) else None


def parse_id(raw: str, *, label: str = "id", other_whole: bool = False) -> IdRef:
    """A whole UUID or a hex prefix of at least `MIN_PREFIX` digits; else a usage error
    naming the value (`label` says what it is, e.g. "job id"). With `other_whole`, a value
    that is not made of hex digits and hyphens is taken as a whole id of another format
    (SQS does not promise that message ids are UUIDs); a short hex one is still refused."""
    text = str(raw).strip()
    try:
        return IdRef(given=text, value=str(UUID(text)), form="uuid")
    except ValueError:
        pass
    digits = _prefix_digits(text) if text else None
    if digits is None:
        if other_whole and text and not _HEX_OR_HYPHEN.fullmatch(text.lower()):
            return IdRef(given=text, value=text, form="other")
        raise UsageError(
            f"invalid {label} {raw!r}: not a UUID or a prefix of at least {MIN_PREFIX} hex "
            "characters"
        )
    if len(digits) < MIN_PREFIX:
        raise UsageError(
            f"invalid {label} {raw!r}: not a UUID, and a short id needs at least "
            f"{MIN_PREFIX} hex characters"
        )
    return IdRef(given=text, value=digits, form="prefix")


def parse_ids(values: Sequence[str], *, label: str = "id") -> list[IdRef]:
    """Every value parsed, de-duplicated in order; at least one is required."""
    refs: list[IdRef] = []
    seen: set[tuple[str, str]] = set()
    for raw in values:
        ref = parse_id(raw, label=label)
        if (ref.value, ref.form) not in seen:
            seen.add((ref.value, ref.form))
            refs.append(ref)
    if not refs:
        raise UsageError(f"give at least one {label}")
    return refs


def choose(ref: IdRef, candidates: Sequence[str], *, label: str = "id", more: bool = False) -> str:
    """The one candidate `ref` names. `candidates` are the ids it matched (in the order to
    show them); `more` says there were others not listed. Exit 4 when there is none,
    exit 2 (naming up to MAX_CANDIDATES) when there are several."""
    if not candidates:
        raise NotFoundError(f"no {label} starts with {ref.given!r}")
    if len(candidates) == 1 and not more:
        return candidates[0]
    shown = ", ".join(candidates[:MAX_CANDIDATES])
    extra = " and more" if more or len(candidates) > MAX_CANDIDATES else ""
    raise UsageError(
        f"{label} prefix {ref.given!r} is ambiguous: it matches {shown}{extra}; "
        "give more characters"
    )


def resolve_ids(*, store: Store, kind: IdKind, values: Sequence[str]) -> list[str]:
    """Whole canonical ids for `values` (whole UUIDs or unique prefixes), in order and
    de-duplicated, with one `dbops_resolve_ids` call for all the prefixes (none when every
    value is a whole UUID). Whole UUIDs are not looked up here."""
    label = KIND_LABEL.get(kind, f"{kind} id")
    refs = parse_ids(values, label=label)
    prefixes = sorted({r.value for r in refs if not r.full})
    found: dict[str, list[str]] = {p: [] for p in prefixes}
    if prefixes:
        rows = store.call(
            "dbops_resolve_ids",
            {"p_kind": kind, "p_prefixes": prefixes, "p_limit": MAX_CANDIDATES + 1},
        )
        for row in rows:
            found.setdefault(str(row["prefix"]), []).append(str(UUID(str(row["id"]))))
    ids: list[str] = []
    for ref in refs:
        if ref.full:
            whole = ref.value
        else:
            matched = found.get(ref.value, [])
            whole = choose(
                ref, matched[:MAX_CANDIDATES], label=label, more=len(matched) > MAX_CANDIDATES
            )
        if whole not in ids:
            ids.append(whole)
    return ids
