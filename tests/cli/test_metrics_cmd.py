"""`dbops metrics`: parsed with prometheus_client's own parser, scraped over loopback,
written as a textfile; and the docs' alert rules and dashboard name only exported metrics."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dbops.cli.metrics_cmd import METRICS, parse_address
from tests.cli.test_top_cmd import API_KEY, put, seed
from tests.conftest import QueuePair
from tests.helpers import free_port, invoke, one_line_error

DOCS = Path(__file__).parents[2] / "docs"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict[Any, float], name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def test_metrics_exposition_parses_and_matches_the_arranged_state(
    variant_env: QueuePair, variant_db: Any, schema_variant: str
) -> None:
    arranged = seed(variant_db, schema_variant)
    put(variant_env, variant_env.dlq_url, 3)
    text = invoke(["metrics"]).stdout
    assert API_KEY not in text
    got = samples(text)
    dlq = variant_env.dlq_name
    assert value(got, "dbops_queue_messages", queue=dlq, role="dlq", state="visible") == 3
    assert value(got, "dbops_queue_messages", queue=dlq, role="dlq", state="in_flight") == 0
    assert value(got, "dbops_jobs_stale") == 2
    assert value(got, "dbops_jobs_orphaned") == 1
    assert value(got, "dbops_jobs", status=arranged["done"]) == 2
    assert value(got, "dbops_jobs_finished_recent", outcome="failed") == 1
    assert value(got, "dbops_workers", state="alive") == 2
    assert value(got, "dbops_workers", state="dead") == 1
    assert value(got, "dbops_ratelimit_requests", rule="public") == 23
    assert value(got, "dbops_ratelimit_denials", rule="public") == 4
    assert value(got, "dbops_audit_verdict", scope="cheap") == 2
    assert 0 <= value(got, "dbops_audit_score", scope="cheap") < 100
    assert value(got, "dbops_audit_check_severity", check="jobs.stale", scope="cheap") == 1
    assert value(got, "dbops_up", source="database") == 1
    names = {name for name, _labels in got}
    assert names <= set(METRICS)


def test_failing_database_marks_it_down_and_keeps_queue_metrics(
    env: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw-secret-y@127.0.0.1:1/none")
    put(env, env.dlq_url, 1)
    text = invoke(["metrics"]).stdout
    assert "pw-secret-y" not in text
    got = samples(text)
    assert value(got, "dbops_up", source="database") == 0
    assert value(got, "dbops_queue_messages", queue=env.dlq_name, role="dlq", state="visible") == 1
    assert not any(name == "dbops_jobs_stale" for name, _l in got)


def test_full_audit_adds_the_full_scope(env: QueuePair, db: Any) -> None:
    seed(db)
    got = samples(invoke(["metrics", "--full-audit"]).stdout)
    assert ("dbops_audit_score", (("scope", "full"),)) in got
    assert value(got, "dbops_audit_check_severity", check="db.migrations", scope="full") == 0


def test_textfile_is_written_0600_atomically(env: QueuePair, db: Any, tmp_path: Path) -> None:
    seed(db)
    target = tmp_path / "textfile" / "dbops.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    result = invoke(["metrics", "--textfile", str(target)])
    assert result.stdout == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert value(samples(target.read_text()), "dbops_jobs_stale") == 2
    assert [p.name for p in target.parent.iterdir()] == ["dbops.prom"]  # no temp file left


def test_textfile_into_a_missing_folder_fails_cleanly(db_env: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(["metrics", "--textfile", str(blocker / "dbops.prom")], code=None)
    assert result.code in (2, 6)
    one_line_error(result.stderr)


def test_serve_answers_scrapes_on_loopback(env: QueuePair, db: Any) -> None:
    seed(db)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbops", "metrics", "--serve", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once the server listens
        assert f"http://127.0.0.1:{port}/metrics" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            first = samples(r.read().decode())
        assert value(first, "dbops_jobs_stale") == 2
        db.execute("update jobs set updated_at = now() where status = 'in_progress'")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            second = samples(r.read().decode())
        assert value(second, "dbops_jobs_stale") == 0  # every scrape gathers afresh
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--serve", "127.0.0.1:0"],
        ["--serve", "127.0.0.1:99999"],
        ["--serve", "example.com:9464"],
        ["--serve", ":9464"],
        ["--serve", "[::1]9464"],
        ["--serve", ""],
        ["--serve", "9464", "--textfile", "x.prom"],
        ["--window", "0s"],
        ["--minutes", "2000"],
    ],
)
def test_bad_input_is_one_line_usage_error(db_env: str, args: list[str]) -> None:
    result = invoke(["metrics", *args], code=2)
    one_line_error(result.stderr)
    assert result.stdout == ""


# --------------------------------------------------------------------------- docs
def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(dbops_[a-z_]+)\b", expr))


def test_alert_rules_parse_and_name_only_exported_metrics() -> None:
    doc = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 6
    named: set[str] = set()
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["labels"]["severity"]
        named |= _metric_names(str(rule["expr"]))
    assert named and named <= set(METRICS), named - set(METRICS)
    # the audit's thresholds: a DLQ alert at depth >= 1, a backlog warning above 100
    exprs = " ".join(str(r["expr"]) for r in rules)
    assert ">= 1" in exprs and "> 100" in exprs


def test_grafana_dashboard_parses_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 6
    named = set().union(*(_metric_names(e) for e in exprs))
    assert named and named <= set(METRICS), named - set(METRICS)
