from tests.helpers import invoke, one_line_error


def test_list_and_show():
    rows = invoke(["runbook", "list", "-o", "json"]).json
    names = {r["name"] for r in rows}
    assert "deploy-migrations" in names
    text = invoke(["runbook", "show", "deploy-migrations"]).stdout
    assert text.startswith("# Deploy dbops migrations")


def test_show_unknown_runbook_exits_4():
    result = invoke(["runbook", "show", "nope"], code=4)
    assert "no runbook named 'nope'" in one_line_error(result.stderr)


def test_run_deploy_migrations_end_to_end(env, monkeypatch):
    result = invoke(["runbook", "run", "deploy-migrations", "--yes", "-o", "json"])
    summary = result.json
    assert summary["ok"] is True
    assert [s["status"] for s in summary["steps"]] == ["ok"] * len(summary["steps"])
    assert any(
        s["command"].startswith("dbops db migrate --yes") or s["command"] == "dbops db migrate"
        for s in summary["steps"]
    )


def test_run_refuses_destructive_step_without_yes_off_a_tty(db_env):
    result = invoke(["runbook", "run", "deploy-migrations", "-o", "json"], code=6)
    summary = result.json
    assert summary["steps"][-1]["status"] == "refused"
    assert f"--from {summary['resume_from']}" in result.stderr


def test_run_stops_at_failing_step_and_says_how_to_resume(monkeypatch):
    # No database configured: the first step (db status) fails with exit 3.
    result = invoke(["runbook", "run", "deploy-migrations", "--yes", "-o", "json"], code=3)
    assert result.json["resume_from"] == 1
    assert "dbops runbook run deploy-migrations --from 1" in result.stderr


def test_dry_run_passes_dry_run_to_destructive_steps(env):
    result = invoke(["runbook", "run", "deploy-migrations", "--dry-run", "-o", "json"])
    commands = [s["command"] for s in result.json["steps"]]
    assert "dbops db migrate --dry-run" in commands
