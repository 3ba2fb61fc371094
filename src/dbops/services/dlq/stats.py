"""`dlq stats`: DLQ message counts grouped by reason, customer, job status, age or source.

The scan is the one `dlq list` and `dlq export` use (`Scan`): every message is received once
under a lease and released at the end, so nothing is consumed (receive counts go up by one).
Bodies are untrusted: every message is counted, whatever its body or attributes; one whose
body is not a JSON object and that carries no attribute for the key is counted under
`(unparsed)`.

Keys (`--by`):

- `reason`: the consumer's `_dlq_reason`, normalised by `normalise_reason` (numbers, UUIDs,
  hex and other ids, emails and URLs replaced by placeholders), so "timeout after 30s" and
  "timeout after 31s" are one group. `(no reason)` when a JSON body has none (messages SQS
  moved by the redrive policy carry none).
- `customer`: `customer_id` from the body, else the `customer_id` attribute; `(none)` when
  absent. Personal data in it is masked unless `reveal`.
- `job_status`: the current status of the message's job in the database (one round trip per
  `LOOKUP_BATCH` distinct job ids, through `dbops_dlq_stats_job_status`); `(no job)` when the
  message names no job, `(unknown)` when the id is not a UUID or no such job exists.
- `age`: how long ago the message was first sent, in the buckets of `AGE_BUCKETS`;
  `(unknown)` without a SentTimestamp.
- `source`: who produced the message: the body's `source` field (architecture.md s.3), else a
  `source` String message attribute, else, for a message SQS moved here through a redrive
  policy, its source queue as `queue:<name>` (the DeadLetterQueueSourceArn system attribute);
  `(none)` when none of these is there. Masked like `customer` unless `reveal`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from dbops.errors import ConfigError, UsageError
from dbops.names import queue_name
from dbops.ports import Queues, Store
from dbops.services.dlq.scan import SCAN_LEASE_SECONDS, Progress, Scan, pg_text_array
from dbops.services.dlq.snapshot import MAX_LEASE_SECONDS, MIN_LEASE_SECONDS
from dbops.services.messages import MessageFilter, ParsedMessage, json_text
from dbops.services.redact import mask_text

GroupBy = Literal["reason", "customer", "job_status", "age", "source"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)

UNPARSED = "(unparsed)"
NO_REASON = "(no reason)"
NONE = "(none)"
NO_JOB = "(no job)"
UNKNOWN = "(unknown)"

# (upper bound in seconds, exclusive; label), the last one open-ended. SQS keeps a DLQ
# message at most 14 days.
AGE_BUCKETS: tuple[tuple[float | None, str], ...] = (
    (5 * 60, "<5m"),
    (60 * 60, "5m-1h"),
    (6 * 3600, "1h-6h"),
    (24 * 3600, "6h-1d"),
    (3 * 86400, "1d-3d"),
    (7 * 86400, "3d-7d"),
    (None, "7d+"),
)
AGE_ORDER = {label: i for i, (_bound, label) in enumerate(AGE_BUCKETS)}

LOOKUP_BATCH = 1000  # distinct job ids per database round trip
RELEASE_WORKERS = 8  # ChangeMessageVisibilityBatch calls in flight at the end of the scan
RECEIVERS = 8  # threads receiving at once (each its own ReceiveMessage loop)
KEY_MAX = 200  # characters of a group key (longer keys are cut, with "…")
REASON_INPUT_MAX = 2000  # characters of a reason that are normalised
JOB_ID_MAX = 100  # longer job ids cannot be UUIDs: never sent to the database


class DlqStatsRow(BaseModel):
    """One row of `dbops dlq stats -o json` (a JSON array of these, largest group first;
    for `--by age`, youngest bucket first):

    `{"key": str, "count": int, "oldest_age_seconds": float|null,
    "newest_age_seconds": float|null, "sample_message_id": str}`

    `key` is the group (see docs/dlq.md for each `--by`); the ages are seconds since the
    oldest and the newest message of the group was sent (null when SQS gave no
    SentTimestamp); `sample_message_id` is the oldest message of the group (for `dlq show`).
    """

    key: str
    count: int
    oldest_age_seconds: float | None = None
    newest_age_seconds: float | None = None
    sample_message_id: str


class DlqStats(BaseModel):
    """The whole `dlq stats` result (the table view; `-o json` prints `rows` only)."""

    queue: str
    by: GroupBy
    rows: list[DlqStatsRow]
    groups: int = Field(description="distinct keys found (rows holds at most --top of them)")
    scanned: int
    matched: int
    omitted: int = Field(0, description="matched messages in groups beyond --top")
    released: int
    drained: bool
    visible_at_end: int | None = None
    lookups: int = Field(0, description="database round trips (job_status)")
    warnings: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- normalisation
# Every pattern below is linear: character classes with possessive quantifiers, fixed-length
# runs, and lookbehinds that let a match start only at the beginning of a run, so no
# position is re-read by a failed attempt more than a bounded number of times.
_WORD_SEP = re.compile(r"([^\w.@+%-]++)")
_UUID = re.compile(
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
    r"[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
)
_ALNUM_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{8,}+(?![A-Za-z0-9])")
_NUMBER = re.compile(r"[0-9]++(?:\.[0-9]++)*+")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")


def _has_digit(text: str) -> bool:
    return any(c.isascii() and c.isdigit() for c in text)


def _is_email(word: str) -> bool:
    """An `@` with something before it and a `.` after it that is not the last character.

    True for a word whenever it is true for any part of it, so that what is left of a
    word after its numbers are replaced is never taken for an email on a second pass."""
    at = word.find("@", 1)
    if at < 0:
        return False
    dot = word.find(".", at + 1)
    return 0 <= dot < len(word) - 1


def _uuid(match: re.Match[str]) -> str:
    return "<uuid>" if _has_digit(match.group(0)) else match.group(0)


def _alnum(match: re.Match[str]) -> str:
    run = match.group(0)
    has_digit = _has_digit(run)
    if not has_digit or run.isdigit():
        return run  # a word, or a plain number (replaced by <n> next)
    if not any(c.isalpha() for c in run):
        return run
    return "<hex>" if all(c in _HEX_CHARS for c in run) else "<id>"


def _word(word: str) -> str:
    if _is_email(word):
        return "<email>"
    if not _has_digit(word):
        return word
    word = _UUID.sub(_uuid, word)
    word = _ALNUM_RUN.sub(_alnum, word)
    return _NUMBER.sub("<n>", word)


def _token(token: str) -> str:
    if "://" in token or token[:4].lower() == "www.":
        return "<url>"
    parts = _WORD_SEP.split(token)
    # split with one group: words at even indices, separators at odd ones
    return "".join(_word(p) if i % 2 == 0 and p else p for i, p in enumerate(parts))


def cut(text: str, limit: int = KEY_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalise_reason(text: str) -> str:
    """A reason with what varies between messages replaced, for grouping.

    Whitespace runs become one space; a token containing `://` or starting with `www.` is
    `<url>`; within a token, a word with an `@` between two parts and a dot after it is
    `<email>`; a UUID is `<uuid>`; a run of 8 or more letters and digits with both is
    `<hex>` (hex digits only) or `<id>`; any other run of digits (with decimals) is `<n>`.
    So "timeout after 30s" and "timeout after 31s" are both "timeout after <n>s". Only the
    first `REASON_INPUT_MAX` characters are read and the result is cut to `KEY_MAX`.

    Linear in its input, never raises, and idempotent: normalising a normalised reason
    changes nothing (placeholders contain no digit and `<`/`>` separate words).
    """
    tokens = text[:REASON_INPUT_MAX].split()
    return cut(" ".join(_token(t) for t in tokens))


# --------------------------------------------------------------------------- grouping
@dataclass
class _Group:
    count: int = 0
    oldest: float | None = None
    newest: float | None = None
    sample: str = ""
    sample_age: float | None = None

    def add(self, message_id: str, age: float | None) -> None:
        if self.count == 0 or (
            age is not None and (self.sample_age is None or age > self.sample_age)
        ):
            self.sample, self.sample_age = message_id, age
        self.count += 1
        if age is not None:
            self.oldest = age if self.oldest is None else max(self.oldest, age)
            self.newest = age if self.newest is None else min(self.newest, age)

    def merge(self, other: _Group) -> None:
        if self.count == 0 or (
            other.sample_age is not None
            and (self.sample_age is None or other.sample_age > self.sample_age)
        ):
            self.sample, self.sample_age = other.sample, other.sample_age
        self.count += other.count
        if other.oldest is not None:
            self.oldest = other.oldest if self.oldest is None else max(self.oldest, other.oldest)
        if other.newest is not None:
            self.newest = other.newest if self.newest is None else min(self.newest, other.newest)

    def row(self, key: str) -> DlqStatsRow:
        return DlqStatsRow(
            key=key,
            count=self.count,
            oldest_age_seconds=round(self.oldest, 1) if self.oldest is not None else None,
            newest_age_seconds=round(self.newest, 1) if self.newest is not None else None,
            sample_message_id=self.sample,
        )


def age_bucket(age: float | None) -> str:
    if age is None:
        return UNKNOWN
    for bound, label in AGE_BUCKETS:
        if bound is None or age < bound:
            return label
    return AGE_BUCKETS[-1][1]  # pragma: no cover - the last bucket is open-ended


def _string_attribute(message: ParsedMessage, name: str) -> str | None:
    value = message.message_attributes.get(name)
    if isinstance(value, dict):
        got = value.get("StringValue")
        return got if isinstance(got, str) else None
    return None


def _shown(value: str, reveal: bool) -> str:
    return cut(value if reveal else mask_text(value))


def reason_key(message: ParsedMessage) -> str:
    if not message.is_json:
        return UNPARSED
    if message.reason is None:
        return NO_REASON
    return normalise_reason(message.reason) or "(empty)"


def customer_key(message: ParsedMessage, *, reveal: bool = False) -> str:
    if message.customer_id is None:
        return NONE if message.is_json else UNPARSED
    return _shown(message.customer_id, reveal) or "(empty)"


def source_key(message: ParsedMessage, *, reveal: bool = False) -> str:
    value: Any = (message.body_json or {}).get("source")
    if value is not None and not isinstance(value, str):
        value = json_text(value)
    if value is None:
        value = _string_attribute(message, "source")
    if value is None:
        arn = message.attributes.get("DeadLetterQueueSourceArn")
        if isinstance(arn, str) and arn:
            value = "queue:" + arn.rsplit(":", 1)[-1]
    if value is None:
        return NONE if message.is_json else UNPARSED
    return _shown(value, reveal) or "(empty)"


class _Grouper:
    """Accumulates groups; job ids wait in `pending` (aggregated per id) for a lookup.

    A full batch of pending ids is looked up by one background thread while the scan goes
    on (the store is used by no other thread meanwhile); `finish()` waits for the lookups
    and folds their statuses into the groups, in this thread."""

    def __init__(self, by: GroupBy, *, store: Store | None, reveal: bool) -> None:
        self.by = by
        self.store = store
        self.reveal = reveal
        self.groups: dict[str, _Group] = {}
        self.pending: dict[str, _Group] = {}
        self.lookups = 0
        self._pool: ThreadPoolExecutor | None = None
        self._looking: list[tuple[Future[dict[str, Any]], dict[str, _Group]]] = []

    def _into(self, key: str) -> _Group:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group()
        return group

    def add(self, message: ParsedMessage) -> None:
        age = message.age_seconds
        if self.by == "job_status":
            job_id = (message.job_id or "").strip()
            if not job_id:
                self._into(NO_JOB).add(message.message_id, age)
            elif len(job_id) > JOB_ID_MAX:
                self._into(UNKNOWN).add(message.message_id, age)
            else:
                group = self.pending.get(job_id)
                if group is None:
                    group = self.pending[job_id] = _Group()
                group.add(message.message_id, age)
                if len(self.pending) >= LOOKUP_BATCH:
                    self.flush()
            return
        if self.by == "reason":
            key = reason_key(message)
        elif self.by == "customer":
            key = customer_key(message, reveal=self.reveal)
        elif self.by == "source":
            key = source_key(message, reveal=self.reveal)
        else:
            key = age_bucket(age)
        self._into(key).add(message.message_id, age)

    def _lookup(self, ids: list[str]) -> dict[str, Any]:
        if self.store is None:  # pragma: no cover - group_messages refuses this earlier
            raise ConfigError("--by job_status needs a database")
        rows = self.store.call("dbops_dlq_stats_job_status", {"p_job_ids": pg_text_array(ids)})
        return {str(r.get("job_id")): r.get("status") for r in rows}

    def flush(self) -> None:
        """Start the lookup of the pending job ids (one round trip, in the background)."""
        if not self.pending:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbops-lookup")
        self._looking.append((self._pool.submit(self._lookup, sorted(self.pending)), self.pending))
        self.lookups += 1
        self.pending = {}

    def __enter__(self) -> _Grouper:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:  # a scan that failed: lookups still running are dropped
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def finish(self) -> None:
        """Look up what is still pending, wait for every lookup, fold them into the groups."""
        try:
            self.flush()
            for future, pending in self._looking:
                statuses = future.result()
                for job_id, group in pending.items():
                    status = statuses.get(job_id)
                    self._into(str(status) if status else UNKNOWN).merge(group)
        finally:
            self._looking = []
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


def rank(rows: Iterable[DlqStatsRow], *, by: GroupBy, top: int | None) -> list[DlqStatsRow]:
    """Largest groups first (ties by key), at most `top`; age buckets then in age order."""
    ranked = sorted(rows, key=lambda r: (-r.count, r.key))
    if top is not None:
        ranked = ranked[:top]
    if by == "age":
        ranked.sort(key=lambda r: AGE_ORDER.get(r.key, len(AGE_ORDER)))
    return ranked


def group_messages(
    *,
    queues: Queues,
    queue_url: str,
    by: str,
    store: Store | None = None,
    message_filter: MessageFilter | None = None,
    top: int | None = None,
    limit: int | None = None,
    lease: int = SCAN_LEASE_SECONDS,
    reveal: bool = False,
    progress: Progress | None = None,
) -> DlqStats:
    """Count the (matching) messages of a queue per `by` key without consuming any.

    `top` keeps the largest groups; `limit` bounds the scan. `store` is needed for
    `by="job_status"` (a usage error without one, before anything is received)."""
    if by not in GROUP_BY:
        raise UsageError(f"invalid --by {by!r}: use one of {', '.join(GROUP_BY)}")
    if top is not None and top < 1:
        raise UsageError(f"invalid --top {top}: must be at least 1")
    if not MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS:
        raise UsageError(
            f"invalid --lease {lease}s: use {MIN_LEASE_SECONDS}s to 12h (SQS's maximum "
            "visibility timeout)"
        )
    if limit is not None and limit < 1:
        raise UsageError(f"invalid --max {limit}: must be at least 1")
    if by == "job_status" and store is None:
        raise ConfigError(
            "--by job_status needs a database", hint="set DATABASE_URL or SUPABASE_URL"
        )
    group_by: GroupBy = by  # type: ignore[assignment]
    message_filter = message_filter or MessageFilter()
    with _Grouper(group_by, store=store, reveal=reveal) as grouper:
        matched = 0
        with Scan(
            queues,
            queue_url,
            lease=lease,
            limit=limit,
            release_workers=RELEASE_WORKERS,
            receivers=RECEIVERS,
        ) as scan:
            for batch in scan.batches():
                for message in batch:
                    if message_filter.accepts(message):
                        matched += 1
                        grouper.add(message)
                if progress:
                    progress(scan.stats.scanned, matched)
        # after the release: the messages are visible again while the last lookups finish
        grouper.finish()
    rows = rank((g.row(k) for k, g in grouper.groups.items()), by=group_by, top=top)
    warnings = []
    if not scan.stats.drained and limit is None:
        warnings.append(
            f"the queue still reports {scan.stats.visible_at_end} visible message(s) the scan "
            "did not receive (FIFO groups or a busy queue): counts may be low"
        )
    return DlqStats(
        queue=queue_name(queue_url),
        by=group_by,
        rows=rows,
        groups=len(grouper.groups),
        scanned=scan.stats.scanned,
        matched=matched,
        omitted=matched - sum(r.count for r in rows),
        released=scan.stats.released,
        drained=scan.stats.drained,
        visible_at_end=scan.stats.visible_at_end,
        lookups=grouper.lookups,
        warnings=warnings,
    )
