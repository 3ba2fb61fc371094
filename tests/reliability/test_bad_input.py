"""Bad-input matrix: every command, fed malformed input, fails cleanly.

One table (CASES) drives one test. Each case names the command it covers, the arguments
after it, the exit code architecture.md section 1 documents for that failure (2 usage,
3 configuration, 4 not found, 5 remote, 6 refused) and why. Each invocation must fail with
that code, print nothing on stdout, and print exactly one `Error: ...` line on stderr (or,
for usage errors click itself reports, click's standard `Usage:/Try/Error:` block), never a
traceback.

`test_every_command_has_a_case` walks the real command tree, so a new command without a
row here fails the suite.

Inputs use placeholders, filled in per test: {missing_url} is a queue URL on the test SQS
endpoint that does not exist, {uuid} a well-formed job id no job has, {long} 10,000
characters, {long_digits} a 10,000-digit number, {export} / {masked} a one-message export
file for `dlq replay` (unmasked / masked; its source queue does not exist).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click
import psycopg
import pytest
import typer
from psycopg import sql

from dbops.cli.main import app
from tests.conftest import QueuePair, _admin, _with_db
from tests.helpers import invoke

USAGE, CONFIG, NOT_FOUND, REMOTE, REFUSED = 2, 3, 4, 5, 6

LONG = "x" * 10_000
LONG_DIGITS = "1" * 10_000


@dataclass(frozen=True)
class Case:
    command: str  # the command path covered, e.g. "jobs show"
    args: tuple[str, ...]  # arguments after the command path (placeholders allowed)
    code: int  # documented exit code
    why: str  # the kind of bad input
    xfail: str | None = None  # a known bug (strict: the test fails once it is fixed)

    @property
    def id(self) -> str:
        return f"{self.command}:{self.why}"

    def param(self) -> Any:
        marks = [pytest.mark.xfail(reason=self.xfail, strict=True)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def case(
    command: str, args: str | list[str], code: int, why: str, *, xfail: str | None = None
) -> Case:
    """A row: `args` is split on spaces when given as one string."""
    return Case(command, tuple(args.split() if isinstance(args, str) else args), code, why, xfail)


# fmt: off
CASES: list[Case] = [
    # ---------------------------------------------------------------- top-level commands
    case("doctor", "-o bogus", USAGE, "bad output format"),
    case("doctor", "extra-argument", USAGE, "unexpected argument"),
    case("log", "--since 10x", USAGE, "malformed duration"),
    case("log", "--since 5", USAGE, "duration without unit"),
    case("log", ["--since", ""], USAGE, "empty duration"),
    case("log", ["--since", "{long}"], USAGE, "long duration"),
    case("log", "--since {long_digits}m", USAGE, "huge duration"),
    case("log", "--limit 0", USAGE, "zero limit"),
    case("log", "--limit -1", USAGE, "negative limit"),
    case("log", "--profile no-such-profile", CONFIG, "unknown profile"),
    case("log", "--outcome bogus", USAGE, "unknown outcome"),
    case("log", ["--outcome", ""], USAGE, "empty outcome"),
    case("log", ["--operator", ""], USAGE, "empty operator"),
    case("log", ["--command", "  "], USAGE, "blank command"),
    case("log", "--operator", USAGE, "operator without value"),
    case("demo", "-o bogus", USAGE, "bad output format"),
    case("demo", "extra-argument", USAGE, "unexpected argument"),
    # ---------------------------------------------------------------- jobs
    case("jobs list", "--since 10x", USAGE, "malformed duration"),
    case("jobs list", "--since 0s", USAGE, "zero duration"),
    case("jobs list", "--limit 0", USAGE, "zero limit"),
    case("jobs list", ["--limit", "{long_digits}"], USAGE, "huge limit"),
    case("jobs list", "--status bogus", USAGE, "unknown status"),
    case("jobs list", ["--status", ""], USAGE, "empty status"),
    case("jobs list", ["--customer", "a\x00b"], USAGE, "NUL byte"),
    case("jobs show", "not-a-uuid", USAGE, "malformed id"),
    case("jobs show", [""], USAGE, "empty id"),
    case("jobs show", ["{long}"], USAGE, "long id"),
    case("jobs show", "{uuid}", NOT_FOUND, "unknown id"),
    case("jobs show", "abcde", USAGE, "short id under 6 hex characters"),
    case("jobs show", "abcdef", NOT_FOUND, "short id matching no job"),
    case("jobs show", "abcdefg", USAGE, "short id not hex"),
    case("jobs stats", "--since 10x", USAGE, "malformed duration"),
    case("jobs stats", ["--since", ""], USAGE, "empty duration"),
    case("jobs stale", "--older-than 5", USAGE, "duration without unit"),
    case("jobs stale", "--limit 0", USAGE, "zero limit"),
    case("jobs orphans", "--older-than 10x", USAGE, "malformed duration"),
    case("jobs orphans", "--limit -1", USAGE, "negative limit"),
    case("jobs recover", "--older-than 5 --yes", USAGE, "duration without unit"),
    case("jobs recover", "--older-than 1m --yes", USAGE, "threshold under the dead-worker time"),
    case("jobs recover", "--limit 0 --yes", USAGE, "zero limit"),
    case("jobs recover", "--max-recoveries -1 --yes", USAGE, "negative number"),
    case("jobs recover", "--chunk-size 0 --yes", USAGE, "zero chunk size"),
    case("jobs recover", "--group-by bogus --yes", USAGE, "unknown group-by"),
    case("jobs requeue", "--orphans --group-by bogus --yes", USAGE, "unknown group-by"),
    case("jobs requeue", "not-a-uuid --yes", USAGE, "malformed id"),
    case("jobs requeue", ["", "--yes"], USAGE, "empty id"),
    case("jobs requeue", "abc --yes", USAGE, "short id under 6 hex characters"),
    case("jobs requeue", "abcdef01 --yes", NOT_FOUND, "short id matching no job"),
    case("jobs requeue", "--orphans --older-than 10x --yes", USAGE, "malformed duration"),
    case("jobs requeue", "--yes", USAGE, "neither ids nor --orphans"),
    case("jobs requeue", "--orphans --limit 0 --yes", USAGE, "zero limit"),
    case("jobs fail", "not-a-uuid --reason broken --yes", USAGE, "malformed id"),
    case("jobs fail", ["{long}", "--reason", "broken", "--yes"], USAGE, "long id"),
    case("jobs fail", ["{uuid}", "--reason", "", "--yes"], USAGE, "empty reason"),
    case("jobs fail", "{uuid} --yes", USAGE, "missing --reason"),
    case("jobs fail", "12345 --reason broken --yes", USAGE, "short id under 6 hex characters"),
    case("jobs fail", "abcdef --reason broken --yes", NOT_FOUND, "short id matching no job"),
    case("jobs fail", "--reason x --yes", USAGE, "no ids and no filter"),
    case("jobs fail", "--status failed --reason x --yes", USAGE, "status fail does not act on"),
    case("jobs fail", "--status bogus --reason x --yes", USAGE, "unknown status"),
    case("jobs fail", "--until 10x --reason x --yes", USAGE, "malformed duration"),
    case("jobs fail", ["--customer", "a\x00b", "--reason", "x", "--yes"], USAGE, "NUL byte"),
    case("jobs fail", "{uuid} --status pending --reason x --yes", USAGE, "ids and a filter"),
    case("jobs retry", "--yes", USAGE, "no ids and no filter"),
    case("jobs retry", "--limit 10 --yes", USAGE, "a limit is no filter"),
    case("jobs retry", "--status bogus --yes", USAGE, "unknown status"),
    case("jobs retry", "--status completed --yes", USAGE, "status retry does not act on"),
    case("jobs retry", ["--status", "", "--yes"], USAGE, "empty status"),
    case("jobs retry", ["--customer", "", "--yes"], USAGE, "empty customer"),
    case("jobs retry", ["--error-like", " ", "--yes"], USAGE, "blank error text"),
    case("jobs retry", ["--error-like", "{long}", "--yes"], USAGE, "long error text"),
    case("jobs retry", "--since 10x --yes", USAGE, "malformed duration"),
    case("jobs retry", "--until 0s --yes", USAGE, "zero duration"),
    case("jobs retry", "--since 1h --until 2h --yes", USAGE, "empty window"),
    case("jobs retry", "--status failed --limit 0 --yes", USAGE, "zero limit"),
    case("jobs retry", "--status failed --chunk-size 5 --yes", USAGE, "chunk size too small"),
    case("jobs retry", "--status failed --group-by bogus --yes", USAGE, "unknown group-by"),
    case("jobs retry", "not-a-uuid --yes", USAGE, "malformed id"),
    case("jobs retry", "{uuid} --yes", NOT_FOUND, "unknown id"),
    case("jobs retry", "{uuid} --status failed --yes", USAGE, "ids and a filter"),
    # ---------------------------------------------------------------- dlq
    case("dlq list", "--queue no-such-queue", NOT_FOUND, "unknown queue name"),
    case("dlq list", "--queue {missing_url}", NOT_FOUND, "unknown queue URL"),
    case("dlq list", "--limit 0", USAGE, "zero limit"),
    case("dlq list", ["--queue", ""], USAGE, "empty queue"),
    case("dlq list", ["--queue", "{long}"], NOT_FOUND, "long queue name"),
    case("dlq show", "some-message-id --queue no-such-queue", NOT_FOUND, "unknown queue name"),
    case("dlq show", "no-such-message-id", NOT_FOUND, "unknown message id"),
    case("dlq show", "some-message-id --scan-limit 0", USAGE, "zero scan limit"),
    case("dlq show", [""], USAGE, "empty message id"),
    case("dlq show", ["{long}"], NOT_FOUND, "long message id"),
    case("dlq show", "abcde", USAGE, "short message id under 6 hex characters"),
    case("dlq show", "abcdef", NOT_FOUND, "short message id matching nothing"),
    case("dlq stats", "--by colour", USAGE, "unknown --by"),
    case("dlq stats", ["--by", ""], USAGE, "empty --by"),
    case("dlq stats", "--top 0", USAGE, "zero top"),
    case("dlq stats", "--top -1", USAGE, "negative top"),
    case("dlq stats", ["--top", "{long_digits}"], USAGE, "huge top"),
    case("dlq stats", "--max 0", USAGE, "zero max"),
    case("dlq stats", "--older-than 10x", USAGE, "malformed duration"),
    case("dlq stats", "--lease 5", USAGE, "duration without unit"),
    case("dlq stats", "--lease 1s", USAGE, "lease too short"),
    case("dlq stats", "--match foo", USAGE, "malformed --match"),
    case("dlq stats", ["--queue", ""], USAGE, "empty queue"),
    case("dlq stats", "--queue {missing_url}", NOT_FOUND, "unknown queue URL"),
    case("dlq stats", "--queue no-such-queue --by job_status", NOT_FOUND, "unknown queue name"),
    case("dlq export", "--out {tmp}/x.jsonl --older-than 10x", USAGE, "malformed duration"),
    case("dlq export", "--out {tmp}/x.jsonl --lease 5", USAGE, "duration without unit"),
    case("dlq export", "--out {tmp}/x.jsonl --max 0", USAGE, "zero max"),
    case("dlq export", "--out {tmp}/x.jsonl --match foo", USAGE, "malformed --match"),
    case("dlq export", "--out {tmp}/x.jsonl --queue {missing_url}", NOT_FOUND, "unknown URL"),
    case("dlq export", ["--out", ""], USAGE, "empty --out"),
    case("dlq export", ["--out", "{tmp}/x.jsonl", "--reason", " "], USAGE, "blank reason"),
    case("dlq export", "--out {file}/x.jsonl", USAGE, "--out under a file"),
    case("dlq export", ["--out", "{tmp}/{long}"], USAGE, "long --out"),
    case("dlq purge", "--queue no-such-queue --yes", NOT_FOUND, "unknown queue name"),
    case("dlq purge", "--lease 10x --yes", USAGE, "malformed duration"),
    case("dlq purge", ["--queue", "", "--yes"], USAGE, "empty queue"),
    case("dlq purge", "--lease 1s --yes", USAGE, "lease too short"),
    case("dlq purge", "--lease 13h --yes", USAGE, "lease over the SQS maximum"),
    case("dlq purge", "--fast --lease 1s --yes", USAGE, "fast with a too short lease"),
    case("dlq purge", "--backup {file} --yes", USAGE, "existing backup file"),
    case("dlq delete", "--older-than 5 --yes", USAGE, "duration without unit"),
    case("dlq delete", "--match foo --yes", USAGE, "malformed --match"),
    case("dlq delete", "--manifest {tmp}/no-such-file.jsonl --yes", USAGE, "missing manifest"),
    case("dlq delete", "--yes", USAGE, "no filter"),
    case("dlq delete", ["--reason", "", "--yes"], USAGE, "empty reason"),
    case("dlq delete", ["--customer", "acme", "--job-id", "", "--yes"], USAGE, "empty job id"),
    case("dlq delete", "--customer acme --queue {missing_url} --yes", NOT_FOUND, "unknown URL"),
    case("dlq delete", "--customer acme --lease 1s --yes", USAGE, "lease too short"),
    case("dlq delete", "--customer acme --backup {file} --yes", USAGE, "existing backup file"),
    case("dlq replay", "{tmp}/no-such-file.jsonl --yes", USAGE, "missing file"),
    case("dlq replay", [""], USAGE, "empty file name"),
    case("dlq replay", "{file} --yes", USAGE, "not JSON lines"),
    case("dlq replay", "{masked} --yes", REFUSED, "masked export"),
    case("dlq replay", "{export} --rate 0 --yes", USAGE, "zero rate"),
    case("dlq replay", "{export} --workers 0 --yes", USAGE, "zero workers"),
    case("dlq replay", ["{export}", "--to", "", "--yes"], USAGE, "empty target"),
    case("dlq replay", "{export} --to no-such-queue --yes", NOT_FOUND, "unknown target queue"),
    case("dlq replay", ["{export}", "--to", "{long}", "--yes"], NOT_FOUND, "long target name"),
    case("dlq replay", "{export} --yes", NOT_FOUND, "source queue gone"),
    case("dlq monitor", "--threshold 0", USAGE, "zero threshold"),
    case("dlq monitor", "--interval 10x", USAGE, "malformed duration"),
    case("dlq monitor", "--notify email", USAGE, "unknown channel"),
    case("dlq monitor", "--notify slack", CONFIG, "webhook not configured"),
    case("dlq monitor", "--queue no-such-queue", NOT_FOUND, "unknown queue name"),
    case("dlq redrive", "--max -1 --yes", USAGE, "negative max"),
    case("dlq redrive", "--max 0 --yes", USAGE, "zero max"),
    case("dlq redrive", "--rate 0 --yes", USAGE, "zero rate"),
    case("dlq redrive", "--workers 0 --yes", USAGE, "zero workers"),
    case("dlq redrive", "--older-than 10x --yes", USAGE, "malformed duration"),
    case("dlq redrive", "--canary-wait 5 --canary 1 --yes", USAGE, "duration without unit"),
    case("dlq redrive", "--match foo --yes", USAGE, "malformed --match"),
    case("dlq redrive", "--method bogus --yes", USAGE, "unknown method"),
    case("dlq redrive", "--to no-such-queue --yes", NOT_FOUND, "unknown target queue"),
    case("dlq redrive", "--queue {missing_url} --yes", NOT_FOUND, "unknown DLQ URL"),
    case("dlq redrive", ["--to", "{long}", "--yes"], NOT_FOUND, "long target name"),
    case("dlq redrive", ["--queue", "", "--yes"], USAGE, "empty queue"),
    case("dlq redrive", ["--to", "", "--yes"], USAGE, "empty target"),
    case("dlq redrive", ["--reason", "", "--yes"], USAGE, "empty reason"),
    case("dlq redrive", ["--job-id", " ", "--yes"], USAGE, "blank job id"),
    case("dlq redrive", ["--customer", "", "--yes"], USAGE, "empty customer"),
    case("dlq redrive-status", ["--queue", ""], USAGE, "empty queue"),
    case("dlq redrive-status", "--queue no-such-queue", NOT_FOUND, "unknown queue name"),
    case("dlq redrive-cancel", "--queue no-such-queue --yes", NOT_FOUND, "unknown queue name"),
    # ---------------------------------------------------------------- queue
    case("queue list", "-o bogus", USAGE, "bad output format"),
    case("queue list", ["--endpoint-url", ""], CONFIG, "empty endpoint URL"),
    case("queue list", ["--endpoint-url", "not a url"], CONFIG, "malformed endpoint URL"),
    case("queue list", "--endpoint-url http://127.0.0.1:1", REMOTE, "unreachable endpoint"),
    case("queue info", "no-such-queue", NOT_FOUND, "unknown queue name"),
    case("queue info", "{missing_url}", NOT_FOUND, "unknown queue URL"),
    case("queue info", ["{long}"], NOT_FOUND, "long queue name"),
    case("queue info", [""], USAGE, "empty queue"),
    case("queue depth", "no-such-queue", NOT_FOUND, "unknown queue name"),
    case("queue depth", "{missing_url}", NOT_FOUND, "unknown queue URL"),
    case("queue depth", ["{long}"], NOT_FOUND, "long queue name"),
    case("queue depth", [""], USAGE, "empty queue"),
    case("queue watch", "--interval 10x --count 1", USAGE, "malformed duration"),
    case("queue watch", "--count 0", USAGE, "zero count"),
    case("queue watch", "no-such-queue --count 1", NOT_FOUND, "unknown queue name"),
    case("queue watch", ["", "--count", "1"], USAGE, "empty queue"),
    # ---------------------------------------------------------------- ratelimit
    case("ratelimit list", "-o bogus", USAGE, "bad output format"),
    case("ratelimit set", "no-such-rule --limit 5 --yes", NOT_FOUND, "unknown rule"),
    case("ratelimit set", "public --limit 0 --yes", USAGE, "zero limit"),
    case("ratelimit set", "public --limit -1 --yes", USAGE, "negative limit"),
    case("ratelimit set", "public --limit 5 --window 10x --yes", USAGE, "malformed duration"),
    case("ratelimit set", "public --limit 5 --for 5 --yes", USAGE, "duration without unit"),
    case("ratelimit enable", "no-such-rule --yes", NOT_FOUND, "unknown rule"),
    case("ratelimit enable", ["", "--yes"], NOT_FOUND, "empty rule name"),
    case("ratelimit disable", "no-such-rule --yes", NOT_FOUND, "unknown rule"),
    case("ratelimit disable", ["{long}", "--yes"], NOT_FOUND, "long rule name"),
    case("ratelimit top", "--since 10x", USAGE, "malformed duration"),
    case("ratelimit top", "--limit 0", USAGE, "zero limit"),
    case("ratelimit top", "--sort loudest", USAGE, "unknown sort"),
    case("ratelimit status", "foo", USAGE, "malformed identifier"),
    case("ratelimit status", "ip:999.1.1.1", USAGE, "malformed IP"),
    case("ratelimit status", [""], USAGE, "empty identifier"),
    case("ratelimit status", "api_key:", USAGE, "empty API key"),
    case("ratelimit status", ["ip:{long}"], USAGE, "long identifier"),
    case("ratelimit status", ["ip:1.2.3.4", "--endpoint", ""], USAGE, "empty endpoint"),
    case("ratelimit reset", "foo --yes", USAGE, "malformed identifier"),
    case("ratelimit reset", "ip:999.1.1.1 --yes", USAGE, "malformed IP"),
    case("ratelimit reset", "ip:1.2.3.4 --batch-size 0 --yes", USAGE, "zero batch size"),
    case("ratelimit block", "foo --for 1h --reason abuse --yes", USAGE, "malformed identifier"),
    case("ratelimit block", "ip:1.2.3.4 --for 5 --reason abuse --yes", USAGE, "duration w/o unit"),
    case("ratelimit block", "ip:1.2.3.4 --for 0s --reason abuse --yes", USAGE, "zero duration"),
    case("ratelimit block", ["ip:1.2.3.4", "--for", "1h", "--reason", "", "--yes"], USAGE,
         "empty reason"),
    case("ratelimit unblock", "ip:999.1.1.1 --yes", USAGE, "malformed IP"),
    case("ratelimit unblock", "ip:192.0.2.1 --yes", NOT_FOUND, "no active block"),
    case("ratelimit cleanup", "--older-than 10x --yes", USAGE, "malformed duration"),
    case("ratelimit cleanup", "--batch-size 0 --yes", USAGE, "zero batch size"),
    case("ratelimit cleanup", "--older-than 1s --yes", USAGE, "period under the rule windows"),
    # ---------------------------------------------------------------- audit
    case("audit", "--fail-under 101", USAGE, "score out of range"),
    case("audit", "--fail-under -1", USAGE, "negative score"),
    case("audit", "--fail-on bogus", USAGE, "unknown verdict"),
    case("audit", "--check no-such-check --no-save", USAGE, "unknown check"),
    case("audit history", "--limit 0", USAGE, "zero limit"),
    case("audit show", "not-a-run", USAGE, "malformed run id"),
    case("audit show", [""], USAGE, "empty run id"),
    case("audit show", ["{long}"], USAGE, "long run id"),
    case("audit show", "abcde", USAGE, "short id under 6 hex characters"),
    case("audit show", "abcdefg", USAGE, "short id not hex"),
    case("audit show", "abcdef", NOT_FOUND, "short id matching no run"),
    case("audit show", "{uuid}", NOT_FOUND, "unknown run id"),
    case("audit show", "latest -o bogus", USAGE, "bad output format"),
    case("audit show", "", USAGE, "missing run id"),
    case("audit diff", "latest", USAGE, "one run only"),
    case("audit diff", "abcde latest", USAGE, "short id under 6 hex characters"),
    case("audit diff", "latest not-a-run", USAGE, "malformed run id"),
    case("audit diff", "abcdef {uuid}", NOT_FOUND, "short id matching no run"),
    # ---------------------------------------------------------------- top, metrics
    case("top", "--once --interval 0s", USAGE, "zero interval"),
    case("top", "--once --interval fast", USAGE, "malformed interval"),
    case("top", ["--once", "--interval", ""], USAGE, "empty interval"),
    case("top", ["--once", "--interval", "{long_digits}s"], USAGE, "huge interval"),
    case("top", "--once --window 10x", USAGE, "malformed window"),
    case("top", "--once --minutes 0", USAGE, "zero minutes"),
    case("top", "--once -o csv", USAGE, "output format it does not draw"),
    case("top", "--once -o bogus", USAGE, "bad output format"),
    case("top", "extra-argument", USAGE, "unexpected argument"),
    case("metrics", "--serve 127.0.0.1:0", USAGE, "port zero"),
    case("metrics", "--serve 127.0.0.1:99999", USAGE, "port out of range"),
    case("metrics", "--serve example.com:9464", USAGE, "host name"),
    case("metrics", ["--serve", ""], USAGE, "empty address"),
    case("metrics", ["--serve", "{long}"], USAGE, "long address"),
    case("metrics", "--serve 9464 --textfile x.prom", USAGE, "serve and textfile"),
    case("metrics", "--textfile {tmp}", USAGE, "textfile is a folder"),
    case("metrics", "--window 0s", USAGE, "zero window"),
    case("metrics", "--minutes -1", USAGE, "negative minutes"),
    case("metrics", "--profile no-such-profile", CONFIG, "unknown profile"),
    # ---------------------------------------------------------------- runbook
    case("runbook list", "-o bogus", USAGE, "bad output format"),
    case("runbook show", "no-such-runbook", NOT_FOUND, "unknown runbook"),
    case("runbook show", ["../../etc/passwd"], NOT_FOUND, "path as a name"),
    case("runbook show", [""], NOT_FOUND, "empty name"),
    case("runbook show", ["{long}"], NOT_FOUND, "long name"),
    case("runbook show", "stale-jobs -o bogus", USAGE, "bad output format"),
    case("runbook run", "no-such-runbook --yes", NOT_FOUND, "unknown runbook"),
    case("runbook run", "stale-jobs --from 0 --dry-run", USAGE, "zero step"),
    case("runbook run", "stale-jobs --set foo --dry-run", USAGE, "malformed --set"),
    # ---------------------------------------------------------------- workers
    case("workers", "--dead-after 10x", USAGE, "malformed duration"),
    case("workers", "-o bogus", USAGE, "bad output format"),
    case("workers list", "--dead-after 5", USAGE, "duration without unit"),
    case("workers list", ["--dead-after", ""], USAGE, "empty duration"),
    case("workers list", "--dead-after 0s", USAGE, "zero duration"),
    case("workers list", "--dead-after {long_digits}m", USAGE, "huge duration"),
    case("workers list", "--limit 0", USAGE, "zero limit"),
    case("workers list", ["--queue", ""], USAGE, "empty queue"),
    case("workers list", ["--queue", "a\x00b"], USAGE, "NUL byte"),
    case("workers show", "not-a-uuid", USAGE, "malformed id"),
    case("workers show", [""], USAGE, "empty id"),
    case("workers show", ["{long}"], USAGE, "long id"),
    case("workers show", "{uuid}", NOT_FOUND, "unknown id"),
    case("workers show", "{uuid} --dead-after 10x", USAGE, "malformed duration"),
    case("workers forget", "not-a-uuid --yes", USAGE, "malformed id"),
    case("workers forget", ["{long}", "--yes"], USAGE, "long id"),
    case("workers forget", "{uuid} --yes", NOT_FOUND, "unknown id"),
    case("workers forget", "{uuid} --dead-after 1m --yes", USAGE, "threshold under 2m"),
    case("workers forget", "{uuid} --dead-after 10x --yes", USAGE, "malformed duration"),
    # ---------------------------------------------------------------- config, db, sandbox
    case("config show", "-o bogus", USAGE, "bad output format"),
    case("config show", "--env-file {tmp}/no-such-file.env", CONFIG, "missing --env-file"),
    case("config path", "extra-argument", USAGE, "unexpected argument"),
    case("db migrate", "-o bogus", USAGE, "bad output format"),
    case("db status", "-o bogus", USAGE, "bad output format"),
    case("db check", "-o bogus", USAGE, "bad output format"),
    case("db check", "extra-argument", USAGE, "unexpected argument"),
    case("db roles", "-o bogus", USAGE, "bad output format"),
    case("db roles", "extra-argument", USAGE, "unexpected argument"),
    case("db roles", "--dry-run", USAGE, "--dry-run without --apply"),
    case("db roles", "--yes", USAGE, "--yes without --apply"),
    case("db roles", "--apply --dry-run --profile no-such-profile", CONFIG, "unknown profile"),
    case("db inspect", "no-such-section", USAGE, "unknown section"),
    case("db inspect", "-o bogus", USAGE, "bad output format"),
    case("db inspect", "long-running --min-duration 10x", USAGE, "malformed duration"),
    case("db inspect", ["long-running", "--min-duration", ""], USAGE, "empty duration"),
    case("db inspect", ["long-running", "--min-duration", "{long_digits}s"], USAGE, "huge"),
    case("db inspect", "all -o csv", USAGE, "csv for every section"),
    case("db inspect", "locks --profile no-such-profile", CONFIG, "unknown profile"),
    case("sandbox up", "-o bogus", USAGE, "bad output format"),
    case("sandbox down", "-o bogus", USAGE, "bad output format"),
    case("sandbox status", "extra-argument", USAGE, "unexpected argument"),
    case("sandbox env", "-o bogus", USAGE, "bad output format"),
    case("sandbox up", "--schema bogus", USAGE, "unknown schema"),
    case("sandbox seed", "--scenario bogus", USAGE, "unknown scenario"),
    case("sandbox seed", "--schema bogus", USAGE, "unknown schema"),
    case("sandbox seed", "--schema legacy", CONFIG, "sandbox not running"),
]
# fmt: on


def cli_commands() -> set[str]:
    """Every command path a user can run: leaf commands, and groups that run by themselves."""
    found: set[str] = set()

    def walk(command: click.Command, path: list[str]) -> None:
        if not isinstance(command, click.Group):
            found.add(" ".join(path))
            return
        if path and command.invoke_without_command:
            found.add(" ".join(path))
        ctx = click.Context(command)
        for name in command.list_commands(ctx):  # subgroups load lazily: ask, don't peek
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join([*path, name])} is listed but does not load"
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_has_a_case() -> None:
    covered = {c.command for c in CASES}
    missing = sorted(cli_commands() - covered)
    assert not missing, f"commands without a bad-input case in CASES: {missing}"
    unknown = sorted(covered - cli_commands())
    assert not unknown, f"CASES name commands the CLI does not have: {unknown}"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


# --------------------------------------------------------------------------- environment
@pytest.fixture(scope="module")
def configured(
    pg_server_url: str, pg_template: str, sqs_client: Any
) -> Iterator[tuple[str, QueuePair]]:
    """One migrated database and one queue pair for the whole matrix.

    Same shape as the `env` fixture (which builds both per test); shared here because
    creating and dropping ~150 databases would take minutes, and no case may change
    anything anyway (each must fail before it acts).
    """
    name = f"dbops_bad_{uuid.uuid4().hex[:10]}"
    with _admin(pg_server_url) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(pg_template)
            )
        )
    suffix = uuid.uuid4().hex[:10]
    dlq_url = sqs_client.create_queue(QueueName=f"bad-{suffix}-dlq")["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    main_url = sqs_client.create_queue(
        QueueName=f"bad-{suffix}",
        Attributes={
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}'
        },
    )["QueueUrl"]
    pair = QueuePair(main_url, dlq_url, f"bad-{suffix}", f"bad-{suffix}-dlq", sqs_client)
    yield _with_db(pg_server_url, name), pair
    for url in (main_url, dlq_url):
        sqs_client.delete_queue(QueueUrl=url)
    with _admin(pg_server_url) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture
def configured_env(
    configured: tuple[str, QueuePair], monkeypatch: pytest.MonkeyPatch, sqs_endpoint: str
) -> QueuePair:
    database_url, pair = configured
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SQS_QUEUE_URL", pair.main_url)
    monkeypatch.setenv("SQS_DLQ_URL", pair.dlq_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    return pair


# --------------------------------------------------------------------------- the matrix
def _replay_file(path: Any, *, masked: bool) -> Any:
    """A one-message export for `dlq replay` rows: its source queue does not exist, so no
    row can send anything; `masked` adds the masked-export header."""
    line = {"message_id": "m-1", "queue": "no-such-source-queue", "body": "x"}
    header = [json.dumps({"dbops_export": {"masked": True}})] if masked else []
    path.write_text("\n".join([*header, json.dumps(line)]) + "\n")
    return path


def assert_clean_failure(stderr: str, code: int) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.rstrip("\n").split("\n")
    if lines[0].startswith("Usage: "):
        # click's own usage error: `Usage: ...`, `Try '... -h' for help.`, blank, `Error: ...`
        assert code == USAGE
        assert len(lines) == 4, stderr
        assert lines[1].startswith("Try ") and lines[2] == "", stderr
        assert lines[3].startswith("Error: "), stderr
        return
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("Error: "), stderr


@pytest.mark.parametrize("bad", [c.param() for c in CASES])
def test_bad_input_fails_with_one_line_and_the_documented_code(
    bad: Case, configured_env: QueuePair, sqs_endpoint: str, tmp_path: Any
) -> None:
    fill = {
        "{missing_url}": f"{sqs_endpoint}/123456789012/no-such-queue-{uuid.uuid4().hex[:6]}",
        "{uuid}": str(uuid.uuid4()),
        "{long_digits}": LONG_DIGITS,
        "{long}": LONG,
        "{tmp}": str(tmp_path),
        "{file}": __file__,
        "{export}": str(_replay_file(tmp_path / "export.jsonl", masked=False)),
        "{masked}": str(_replay_file(tmp_path / "masked.jsonl", masked=True)),
    }
    args = []
    for arg in bad.args:
        for token, value in fill.items():
            arg = arg.replace(token, value)
        args.append(arg)

    result = invoke([*bad.command.split(), *args], code=None)

    shown = " ".join(a if len(a) < 80 else a[:20] + f"...({len(a)} chars)" for a in args)
    assert result.code == bad.code, (
        f"dbops {bad.command} {shown}: exit {result.code}, expected {bad.code}\n"
        f"stdout:\n{result.stdout[:2000]}\nstderr:\n{result.stderr[:2000]}"
    )
    assert result.stdout == "", f"dbops {bad.command} {shown} wrote to stdout:\n{result.stdout}"
    assert_clean_failure(result.stderr, bad.code)
    # The database and queues are shared by every case: none may have changed them.
    assert configured_env.visible(configured_env.main_url) == 0
    assert configured_env.visible(configured_env.dlq_url) == 0


def test_matrix_leaves_the_shared_database_untouched(configured: tuple[str, QueuePair]) -> None:
    database_url, _ = configured
    # Known bugs (xfail rows) do run their command: leave those out.
    buggy = sorted({c.command for c in CASES if c.xfail})
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select command, arguments, outcome from dbops_action_log "
            "where not (command = any(%s))",
            [buggy],
        ).fetchall()
    assert rows == []
