"""Shell ergonomics: completion, command suggestions, plain tables off a terminal, CSV."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, invoke, one_line_error


# --------------------------------------------------------------------------- completion
def complete(monkeypatch, line: str, shell: str = "bash") -> list[str]:
    """What a TAB at the end of `line` offers, through click's env protocol."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    monkeypatch.setenv("_DBOPS_COMPLETE", f"{shell}_complete")
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1) if shell != "fish" else words[-1])
    try:
        result = invoke([], code=0)
    finally:
        monkeypatch.delenv("_DBOPS_COMPLETE")
    assert result.stderr == ""
    if shell == "bash":  # "type,value" lines
        return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]
    if shell == "zsh":  # type, value, help triplets
        return result.stdout.splitlines()[1::3]
    return [line.split(",", 1)[1].split("\t")[0] for line in result.stdout.splitlines() if line]


def test_completes_commands_subcommands_and_options(monkeypatch):
    assert complete(monkeypatch, "dbops jo") == ["jobs"]
    assert {"jobs", "dlq", "queue", "runbook", "doctor", "demo"} <= set(
        complete(monkeypatch, "dbops ")
    )
    assert {"list", "stale", "recover"} <= set(complete(monkeypatch, "dbops jobs "))
    assert complete(monkeypatch, "dbops jobs list --st") == ["--status"]
    assert complete(monkeypatch, "dbops jobs list -o ") == ["table", "json", "jsonl", "csv", "md"]
    assert complete(monkeypatch, "dbops jobs list --status in") == ["in_progress"]


def test_completes_the_global_options_anywhere(monkeypatch):
    assert complete(monkeypatch, "dbops jobs list --pro") == ["--profile"]
    assert complete(monkeypatch, "dbops --no-h") == ["--no-headers"]
    assert "--install-completion" in complete(monkeypatch, "dbops --")


def test_completes_profile_names_from_the_config_file(monkeypatch):
    from dbops.config_files import write_profile

    write_profile("sandbox", {"aws_region": "us-east-1"})
    write_profile("prod", {"aws_region": "eu-west-1"})
    assert complete(monkeypatch, "dbops --profile ") == ["prod", "sandbox"]
    assert complete(monkeypatch, "dbops jobs stale --profile sa") == ["sandbox"]
    assert complete(monkeypatch, "dbops jobs stale --profile=pr") == ["prod"]


def test_completes_runbook_and_rule_names(monkeypatch):
    assert complete(monkeypatch, "dbops runbook show st") == ["stale-jobs"]
    assert "dlq-alert" in complete(monkeypatch, "dbops runbook run ")
    assert complete(monkeypatch, "dbops ratelimit set ") == ["auth", "staff", "public", "admin"]

    from dbops.cli._completion import remember

    remember("rules", ["login-burst", "auth"], replace=True)
    assert complete(monkeypatch, "dbops ratelimit disable ") == [
        "login-burst",
        "auth",
        "staff",
        "public",
        "admin",
    ]


def test_queue_names_come_from_the_cache_that_queue_commands_refresh(env, monkeypatch):
    main, dlq = (url.rsplit("/", 1)[1] for url in (env.main_url, env.dlq_url))
    assert complete(monkeypatch, "dbops queue depth ") == []

    invoke(["queue", "depth", "-o", "json"])

    # A TAB never waits on the network: with SQS unreachable the names still come.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    assert set(complete(monkeypatch, "dbops queue depth ")) == {main, dlq}
    assert complete(monkeypatch, f"dbops dlq list --queue {dlq[:-2]}") == [dlq]
    assert complete(monkeypatch, f"dbops dlq redrive --to {main}") == [main, dlq]


def test_queue_list_replaces_the_cached_names(env, monkeypatch):
    from dbops.cli._completion import MAX_NAMES, remember_queues

    remember_queues(["gone-queue"])
    rows = invoke(["queue", "list", "-o", "json"]).json
    names = set(complete(monkeypatch, "dbops queue info "))
    listed = {r["queue"] for r in rows}
    # A shared server (LocalStack in CI) may list more queues than the cache keeps.
    assert names <= listed and len(names) == min(len(listed), MAX_NAMES)
    assert "gone-queue" not in names


def test_completion_never_raises(monkeypatch, isolated_env):
    from dbops.cli._completion import cache_path

    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text("{not json")
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text("[profiles\nbroken")
    assert complete(monkeypatch, "dbops queue depth ") == []
    assert complete(monkeypatch, "dbops --profile ") == []
    assert complete(monkeypatch, "dbops jobs list --profile") == ["--profile"]


def test_zsh_and_fish_protocols(monkeypatch):
    assert complete(monkeypatch, "dbops runbook show dl", shell="zsh") == ["dlq-alert"]
    assert complete(monkeypatch, "dbops runbook show dl", shell="fish") == ["dlq-alert"]


def test_typer_style_instruction_still_answers(monkeypatch):
    """Scripts installed by the old per-group option send `complete_bash`."""
    monkeypatch.setenv("_DBOPS_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "dbops runbook show st")
    monkeypatch.setenv("COMP_CWORD", "3")
    assert invoke([]).stdout.split() == ["stale-jobs"]


def test_completing_the_root_imports_no_group_module_or_settings():
    env = {
        **os.environ,
        "_DBOPS_COMPLETE": "bash_complete",
        "COMP_WORDS": "dbops ",
        "COMP_CWORD": "1",
    }
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dbops"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "plain,jobs" in result.stdout.splitlines()
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    assert "dbops.cli.main" in imported
    assert not {m for m in imported if m.endswith("_cmd") or m.startswith("pydantic_settings")}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_script(shell):
    script = invoke(["--show-completion", shell]).stdout
    assert f"_DBOPS_COMPLETE={shell}_complete" in script


def test_show_completion_detects_the_shell_or_says_what_to_give(monkeypatch):
    monkeypatch.setenv("SHELL", "/usr/bin/zsh")
    assert "#compdef dbops" in invoke(["--show-completion"]).stdout
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    result = invoke(["--show-completion"], code=2)
    assert "give bash, zsh or fish" in one_line_error(result.stderr)
    assert "unsupported shell 'csh'" in invoke(["--install-completion", "csh"], code=2).stderr


def test_install_completion_writes_the_script_once(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (home / ".bashrc").write_text("export EDITOR=vi")

    first = invoke(["--install-completion", "bash"])
    invoke(["--install-completion", "bash"])

    script = home / ".local/share/bash-completion/completions/dbops"
    assert "_DBOPS_COMPLETE=bash_complete" in script.read_text()
    assert str(script) in first.stderr
    rc = (home / ".bashrc").read_text()
    assert rc.startswith("export EDITOR=vi\n")
    assert rc.count(f". {script}") == 1

    invoke(["--install-completion", "zsh"])
    assert (home / ".zfunc/_dbops").read_text().startswith("#compdef dbops")
    assert "fpath+=~/.zfunc" in (home / ".zshrc").read_text()
    invoke(["--install-completion", "fish"])
    assert "fish_complete" in (home / ".config/fish/completions/dbops.fish").read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_installed_script(tmp_path):
    """End to end: bash sources the script and its function asks dbops."""
    bin_dir = Path(sys.executable).parent
    script = subprocess.run(
        [bin_dir / "dbops", "--show-completion", "bash"], capture_output=True, text=True
    ).stdout
    (tmp_path / "dbops.bash").write_text(script)
    probe = (
        f"source {tmp_path / 'dbops.bash'}; COMP_WORDS=(dbops runbook show dlq); COMP_CWORD=3; "
        "_dbops_completion dbops; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["dlq-alert"]


def test_groups_no_longer_carry_their_own_completion_options():
    assert "--install-completion" not in invoke(["jobs", "--help"]).stdout
    assert "--install-completion" in invoke(["--help"]).stdout


# --------------------------------------------------------------------------- suggestions
def test_mistyped_command_suggests_the_nearest():
    result = invoke(["jbos", "list"], code=2)
    assert "Error: No such command 'jbos'. Did you mean 'jobs'?" in result.stderr.splitlines()


def test_mistyped_subcommand_suggests_at_every_level():
    result = invoke(["dlq", "redrve"], code=2)
    assert "Error: No such command 'redrve'. Did you mean one of 'redrive', " in result.stderr
    result = invoke(["dlq", "purg"], code=2)
    assert "Error: No such command 'purg'. Did you mean 'purge'?" in result.stderr
    result = invoke(["jobs", "stat"], code=2)
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error == ["Error: No such command 'stat'. Did you mean one of 'stats', 'stale'?"]


def test_unrelated_name_gets_no_suggestion():
    result = invoke(["frobnicate"], code=2)
    assert "Error: No such command 'frobnicate'.\n" in result.stderr
    assert "Did you mean" not in result.stderr


# --------------------------------------------------------------------------- tables
def test_table_off_a_terminal_is_tab_separated_with_values_whole(monkeypatch):
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    long = "https://sqs.eu-west-1.amazonaws.com/123456789012/" + "q" * 150
    monkeypatch.setenv("SQS_QUEUE_URL", long)
    lines = invoke(["config", "show"]).stdout.splitlines()
    assert lines[0].split("\t") == ["name", "value", "source"]
    assert all(len(line.split("\t")) == 3 for line in lines)
    row = next(line for line in lines if line.startswith("sqs_queue_url\t"))
    assert row.split("\t")[1] == long

    headless = invoke(["config", "show", "--no-headers"]).stdout.splitlines()
    assert headless == lines[1:]


def test_table_on_a_terminal_is_unchanged(monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    long = "https://sqs.eu-west-1.amazonaws.com/123456789012/" + "q" * 150
    monkeypatch.setenv("SQS_QUEUE_URL", long)
    out = invoke(["config", "show"]).stdout
    assert "\t" not in out and "┃" in out and "name" in out
    assert long not in out  # folded over lines at 80 columns, as before
    assert "name" not in invoke(["config", "show", "--no-headers"]).stdout


def test_table_title_goes_to_stderr_off_a_terminal(env):
    result = invoke(["queue", "info", env.dlq_url])
    queue = env.dlq_url.rsplit("/", 1)[1]
    assert result.stderr.splitlines()[0] == f"queue {queue}"
    fields = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    assert fields["field"] == "value" and fields["queue"] == queue


def test_plain_cells_keep_one_row_per_line(capsys):
    from dbops.cli.output import print_table

    print_table([{"a": "tab\there", "b": "two\nlines"}], ["a", "b"], title="t")
    out, err = capsys.readouterr()
    assert out == "a\tb\ntab\\there\ttwo\\nlines\n"
    assert err.strip() == "t"


# --------------------------------------------------------------------------- csv
def test_csv_flattens_nested_objects_and_names_lists_of_records(capsys):
    from pydantic import BaseModel

    from dbops.cli.output import Output, render

    class Inner(BaseModel):
        id: str
        status: str

    class Event(BaseModel):
        event: str

    class Detail(BaseModel):
        job: Inner
        counts: dict[str, int]
        tags: list[str]
        history: list[Event]

    render(
        Detail(job=Inner(id="j1", status="failed"), counts={"ok": 2}, tags=["a"], history=[]),
        Output.csv,
    )
    out, err = capsys.readouterr()
    assert out.splitlines() == ["job.id,job.status,counts.ok,tags", 'j1,failed,2,"[""a""]"']
    assert "history" in err and "-o json" in err and len(err.strip().splitlines()) == 1


def test_jobs_show_csv_is_flat(env, job_seed):
    job = job_seed.job(idle=3600, customer="acme")
    result = invoke(["jobs", "show", job, "-o", "csv"])
    header, row = result.stdout.splitlines()
    import csv

    values = dict(zip(header.split(","), next(csv.reader([row])), strict=True))
    assert values["job.id"] == job and values["job.customer_id"] == "acme"
    assert not [(k, v) for k, v in values.items() if v.startswith("{")]
    assert "history" in result.stderr and "-o json" in result.stderr


def test_jobs_recover_csv_is_flat(env, job_seed):
    job_seed.job(idle=3600)
    result = invoke(["jobs", "recover", "--dry-run", "-o", "csv"])
    header = result.stdout.splitlines()[0].split(",")
    assert "dry_run" in header and "jobs" not in header
    assert "jobs (lists of records)" in result.stderr


def test_csv_no_headers():
    lines = invoke(["runbook", "list", "-o", "csv", "--no-headers"]).stdout.splitlines()
    assert lines and not lines[0].startswith("name,")


# --------------------------------------------------------------------------- runbook show -o
def test_runbook_show_json_is_a_model_of_its_steps():
    book = invoke(["runbook", "show", "stale-jobs", "-o", "json"]).json
    assert book["name"] == "stale-jobs" and book["title"]
    assert set(book) == {"name", "title", "summary", "inputs", "steps"}
    first = book["steps"][0]
    assert first["number"] == 1 and first["command"].startswith("dbops ")
    assert first["argv"][0] == "dbops" and first["ok_exits"] == [0]
    assert any(s["destructive"] for s in book["steps"])


def test_runbook_show_md_and_csv():
    text = invoke(["runbook", "show", "dlq-alert", "-o", "md"]).stdout
    assert text.startswith("# ")
    rows = invoke(["runbook", "show", "dlq-alert", "-o", "csv"]).stdout.splitlines()
    assert rows[0] == "number,section,command,destructive,ok_exits"
    assert rows[1].startswith("1,")


# --------------------------------------------------------------------------- filters
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["dlq", "redrive", "--reason", "", "--yes"], "--reason"),
        (["dlq", "redrive", "--job-id", " ", "--yes"], "--job-id"),
        (["dlq", "export", "--out", "-", "--reason", "  "], "--reason"),
        (["dlq", "export", "--out", "-", "--customer", ""], "--customer"),
        (["dlq", "delete", "--reason", "", "--yes"], "--reason"),
        (["dlq", "delete", "--customer", "acme", "--job-id", "", "--yes"], "--job-id"),
    ],
)
def test_blank_filter_value_is_a_usage_error(env, args, option):
    env.client.send_message(QueueUrl=env.dlq_url, MessageBody=json.dumps({"job_id": "j"}))
    result = invoke(args, code=2)
    assert f"{option} must not be empty" in one_line_error(result.stderr)
    assert result.stdout == ""
    assert env.visible(env.dlq_url) == 1
