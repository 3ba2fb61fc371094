"""`dbops metrics`: the figures of `dbops top` as Prometheus/OpenMetrics exposition
(reads only). prometheus_client is imported inside the command only, never for --help
or by any other command."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli.output import message, write
from dbops.errors import UsageError

if TYPE_CHECKING:
    from dbops.services.overview import Overview

DEFAULT_HOST = "127.0.0.1"


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `PORT` (loopback) -> (host, port); exit 2 otherwise."""
    raw = text.strip()
    host, port_text = DEFAULT_HOST, raw
    if raw.startswith("["):
        inside, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"invalid --serve {text!r}: use HOST:PORT, e.g. 127.0.0.1:9464")
        host, port_text = inside, rest[1:]
    elif ":" in raw:
        host, _sep, port_text = raw.rpartition(":")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"invalid --serve {text!r}: the port must be 1-65535, e.g. 127.0.0.1:9464")
    if not host:
        raise UsageError(f"invalid --serve {text!r}: empty host (use 0.0.0.0 for every address)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise UsageError(
                f"invalid --serve {text!r}: the host must be an IP address or localhost"
            ) from None
    return host, int(port_text)


# Metric names: every one the collector exports (docs/monitoring.md; the alert rules and
# the Grafana dashboard name only these).
METRICS: dict[str, str] = {
    "dbops_up": "1 when the source answered this scrape, else 0 (label source).",
    "dbops_queue_messages": "Messages on a queue by state (visible, in_flight, delayed).",
    "dbops_queue_oldest_message_age_seconds": "Age of the oldest message (CloudWatch).",
    "dbops_jobs_stale": "In-progress jobs with no sign of life for the stale threshold.",
    "dbops_jobs_orphaned": "Pending jobs older than the orphan threshold, never claimed.",
    "dbops_jobs": "Jobs by status.",
    "dbops_jobs_finished_recent": "Jobs finished in the last --minutes, by outcome.",
    "dbops_workers": "Workers by state: alive (heartbeat within 2 min) or dead.",
    "dbops_workers_dead_holding_jobs": "Dead workers that still name a current job.",
    "dbops_ratelimit_requests": "Rate-limited requests (allowed + denied) in the window, by rule.",
    "dbops_ratelimit_denials": "Requests denied (429) in the window, by rule.",
    "dbops_audit_score": "Audit score 0-100 (scope cheap: the per-refresh subset; full).",
    "dbops_audit_verdict": (
        "Audit verdict as its exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
    ),
    "dbops_audit_check_severity": (
        "Audit check severity: 0 ok, 1 warning, 2 critical, 3 unknown, -1 skipped."
    ),
    "dbops_scrape_duration_seconds": "Time taken to gather the figures.",
}


# long: one short block per exported metric family, in exposition order; split up, the
# list of what is exported would be scattered over several functions.
def families(frame: Overview, duration: float) -> list[Any]:
    """The metric families of one frame (prometheus_client core objects)."""
    from prometheus_client.core import GaugeMetricFamily

    from dbops.services.audit import VERDICT_EXIT
    from dbops.services.overview import SEVERITY_NUMBER

    def gauge(name: str, labels: list[str] | None = None) -> Any:
        return GaugeMetricFamily(name, METRICS[name], labels=labels)

    out: list[Any] = []
    up = gauge("dbops_up", ["source"])
    database_down = "database" in frame.errors
    up.add_metric(["database"], 0.0 if database_down else 1.0)
    roles = {q.role for q in frame.queues}
    for role, key in (("main", "main_queue"), ("dlq", "dlq")):
        if role in roles or key in frame.errors:
            up.add_metric([key], 0.0 if key in frame.errors else 1.0)
    out.append(up)

    messages = gauge("dbops_queue_messages", ["queue", "role", "state"])
    ages = gauge("dbops_queue_oldest_message_age_seconds", ["queue", "role"])
    for q in frame.queues:
        for state, value in (
            ("visible", q.visible),
            ("in_flight", q.in_flight),
            ("delayed", q.delayed),
        ):
            messages.add_metric([q.queue, q.role, state], float(value))
        if q.oldest_age_seconds is not None:
            ages.add_metric([q.queue, q.role], q.oldest_age_seconds)
    out += [messages, ages]

    j = frame.jobs
    if j.stale is not None:
        stale = gauge("dbops_jobs_stale")
        stale.add_metric([], float(j.stale))
        out.append(stale)
    if j.orphaned is not None:
        orphaned = gauge("dbops_jobs_orphaned")
        orphaned.add_metric([], float(j.orphaned))
        out.append(orphaned)
    by_status = gauge("dbops_jobs", ["status"])
    for status, n in sorted(j.by_status.items()):
        by_status.add_metric([status], float(n))
    finished = gauge("dbops_jobs_finished_recent", ["outcome"])
    if j.per_minute:
        finished.add_metric(["completed"], float(sum(m.completed for m in j.per_minute)))
        finished.add_metric(["failed"], float(sum(m.failed for m in j.per_minute)))
    out += [by_status, finished]

    w = frame.workers
    workers = gauge("dbops_workers", ["state"])
    holding = gauge("dbops_workers_dead_holding_jobs")
    if w.alive is not None and w.dead is not None:
        workers.add_metric(["alive"], float(w.alive))
        workers.add_metric(["dead"], float(w.dead))
        holding.add_metric([], float(w.dead_holding_jobs or 0))
    out += [workers, holding]

    requests = gauge("dbops_ratelimit_requests", ["rule"])
    denials = gauge("dbops_ratelimit_denials", ["rule"])
    for r in frame.ratelimit_rules:
        requests.add_metric([r.rule], float(r.requests))
        denials.add_metric([r.rule], float(r.denied))
    out += [requests, denials]

    score = gauge("dbops_audit_score", ["scope"])
    verdict = gauge("dbops_audit_verdict", ["scope"])
    severity = gauge("dbops_audit_check_severity", ["check", "scope"])
    for audit in (frame.audit, frame.audit.full):
        if audit is None:
            continue
        score.add_metric([audit.scope], float(audit.score))
        verdict.add_metric([audit.scope], float(VERDICT_EXIT[audit.verdict]))
        for c in audit.checks:
            severity.add_metric([c.id, audit.scope], float(SEVERITY_NUMBER[c.severity]))
    out += [score, verdict, severity]

    took = gauge("dbops_scrape_duration_seconds")
    took.add_metric([], round(duration, 6))
    out.append(took)
    return out


def registry(build: Any) -> Any:
    """A registry whose one collector gathers a fresh frame (`build()`) on every collect."""
    import threading
    import time

    from prometheus_client import CollectorRegistry

    lock = threading.Lock()  # one frame at a time: the store's connection is shared

    class OverviewCollector:
        def collect(self) -> Any:
            with lock:
                started = time.perf_counter()
                frame = build()
                yield from families(frame, time.perf_counter() - started)

        def describe(self) -> list[Any]:
            return []  # collect on scrape only, not at registration

    reg = CollectorRegistry(auto_describe=False)
    reg.register(OverviewCollector())
    return reg


def metrics(
    serve: Annotated[
        str | None,
        typer.Option(
            "--serve",
            metavar="[HOST:]PORT",
            help="Serve /metrics for scraping (HOST defaults to 127.0.0.1; 0.0.0.0 for all).",
        ),
    ] = None,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            help="Write the exposition to this file atomically (0600), for node_exporter's "
            "textfile collector.",
        ),
    ] = None,
    full_audit: Annotated[
        bool,
        typer.Option(
            "--full-audit", help="Also run the whole audit (more round trips; not saved)."
        ),
    ] = False,
    minutes: Annotated[
        int, typer.Option("--minutes", help="Minutes counted by dbops_jobs_finished_recent.")
    ] = 15,
    window: Annotated[
        str, typer.Option("--window", help="Rate-limit window of the requests and denials.")
    ] = "15m",
) -> None:
    """Prometheus metrics of queues, jobs, workers, rate limits and the audit (reads only).

    Prints the exposition once (default), serves it on /metrics (`--serve`), or writes it
    for node_exporter's textfile collector (`--textfile`). Metric names and the alert
    rules: docs/monitoring.md.

    Example:
        dbops metrics
        dbops metrics --serve 127.0.0.1:9464
        dbops metrics --textfile /var/lib/node_exporter/dbops.prom
    """
    from dbops.durations import parse_duration

    window_seconds = parse_duration(window, option="--window")
    if not 1 <= minutes <= 1440:
        raise UsageError(f"invalid --minutes {minutes}: must be between 1 and 1440")
    if serve is not None and textfile is not None:
        raise UsageError("choose one of --serve and --textfile")
    address = parse_address(serve) if serve is not None else None
    from dbops.services import overview

    sources = _deps.overview_sources()

    def build() -> Overview:
        return overview.gather(
            **sources,
            minutes=minutes,
            window_seconds=window_seconds,
            cloudwatch=True,
            full_audit=full_audit,
        )

    from prometheus_client import generate_latest

    reg = registry(build)
    if address is None:
        text = generate_latest(reg).decode()
        if textfile is None:
            write(text)
            return
        from dbops.files import write_private

        with write_private(textfile, overwrite=True) as stream:
            stream.write(text)
        message(f"wrote {textfile}")
        return
    _serve(reg, *address)


def _serve(reg: Any, host: str, port: int) -> None:
    import threading

    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=reg)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another port",
        ) from None
    shown = f"[{host}]" if ":" in host else host
    message(f"serving http://{shown}:{port}/metrics (Ctrl-C to stop)")
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
