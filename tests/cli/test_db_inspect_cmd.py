"""`dbops db inspect`: sections, output formats, --min-duration, both transports, bad input."""

from __future__ import annotations

import csv
import io
import json

import psycopg

from dbops.services import inspect
from tests.helpers import invoke, one_line_error


def test_one_section_json_and_table(db_env):
    rows = invoke(["db", "inspect", "cache-hit", "-o", "json"]).json
    assert [r["name"] for r in rows] == ["tables", "indexes"]
    assert all(list(r) == inspect.columns("cache-hit") for r in rows)
    table = invoke(["db", "inspect", "table-sizes"])
    assert "table-sizes" in table.stderr and "\tjobs\t" in table.stdout


def test_all_sections_json_jsonl_and_md(db_env):
    report = invoke(["db", "inspect", "-o", "json"]).json  # `all` is the default
    assert list(report) == [name.replace("-", "_") for name in inspect.SECTIONS]
    assert report["connections"] and report["table_sizes"] and report["index_usage"]
    lines = [
        json.loads(line)
        for line in invoke(["db", "inspect", "all", "-o", "jsonl"]).stdout.splitlines()
    ]
    assert {line["section"] for line in lines} >= {"connections", "table-sizes", "cache-hit"}
    md = invoke(["db", "inspect", "all", "-o", "md"]).stdout
    assert "### cache-hit" in md and "### vacuum" in md


def test_csv_of_one_section_has_the_documented_header(db_env):
    out = invoke(["db", "inspect", "index-usage", "-o", "csv"]).stdout
    header = next(csv.reader(io.StringIO(out)))
    assert header == inspect.columns("index-usage") and header[0] == "schema"


def test_long_running_min_duration(db_env, database_url):
    with psycopg.connect(database_url, application_name="inspect-idle") as idle:
        idle.execute("select 1")  # a transaction left open: idle in transaction
        pid = idle.info.backend_pid
        rows = invoke(["db", "inspect", "long-running", "--min-duration", "0s", "-o", "json"]).json
        mine = [r for r in rows if r["pid"] == pid]
        assert [(r["state"], r["application"]) for r in mine] == [
            ("idle in transaction", "inspect-idle")
        ]
        assert set(mine[0]) == set(inspect.columns("long-running"))
        later = invoke(["db", "inspect", "long-running", "--min-duration", "2h", "-o", "json"])
        assert pid not in {r["pid"] for r in later.json}


def test_over_the_supabase_transport(supabase_env):
    rows = invoke(["db", "inspect", "connections", "-o", "json"]).json
    assert rows and all(r["connections"] >= 1 and r["max_connections"] > 0 for r in rows)
    report = invoke(["db", "inspect", "all", "-o", "json"]).json
    assert [r["name"] for r in report["cache_hit"]] == ["tables", "indexes"]


def test_bad_input(db_env):
    unknown = invoke(["db", "inspect", "everything"], code=2).stderr  # click's usage block
    assert "everything" in unknown and "Traceback" not in unknown
    one_line_error(
        invoke(["db", "inspect", "long-running", "--min-duration", "soon"], code=2).stderr
    )
    error = invoke(["db", "inspect", "all", "-o", "csv"], code=2).stderr
    one_line_error(error)
    assert "one section" in error
