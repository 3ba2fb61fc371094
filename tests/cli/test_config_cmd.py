from dbops.settings import config_path, write_profile
from tests.helpers import invoke


def test_config_path_honours_dbops_config_dir(isolated_env):
    assert invoke(["config", "path"]).stdout.strip() == str(isolated_env / "config.toml")
    assert config_path() == isolated_env / "config.toml"


def test_config_show_says_only_whether_secrets_are_set_and_where_from(monkeypatch, tmp_path):
    """No part of a secret: not the end of a key=value DSN (its password), not the end of a
    webhook URL (its token), not the end of a key."""
    monkeypatch.setenv("DATABASE_URL", "host=db.example.com dbname=app password=hunter2-SECRET")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "eyJhbGciOiJIUzI1NiJ9.service.KEYX")
    write_profile("ops", {"slack_webhook_url": "https://hooks.slack.com/services/T0/B0/zzzzSECRET"})
    result = invoke(["config", "show", "--profile", "ops", "-o", "json"])
    rows = {r["name"]: r for r in result.json}
    assert rows["database_url"]["value"] == "set (environment)"
    assert rows["database_url"]["source"] == "env:DATABASE_URL"
    assert rows["database_url"]["secret"] is True
    assert rows["supabase_service_role_key"]["value"] == "set (environment)"
    assert rows["slack_webhook_url"]["value"] == "set (profile)"
    assert rows["slack_webhook_url"]["source"] == "profile:ops"
    assert rows["transport (effective)"]["value"] == "postgres"
    table = invoke(["config", "show", "--profile", "ops"])
    for shown in (result, table):
        for secret in ("hunter2", "SECRET", "KEYX", "zzzz", "hooks.slack.com", "****"):
            assert secret not in shown.stdout
            assert secret not in shown.stderr
    # From an env file; and not set at all.
    env_file = tmp_path / "secrets.env"
    env_file.write_text("SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T/B/envfileTOKEN\n")
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY")
    rows = {
        r["name"]: r
        for r in invoke(["--env-file", str(env_file), "config", "show", "-o", "json"]).json
    }
    assert rows["slack_webhook_url"]["value"] == "set (env-file)"
    assert rows["supabase_service_role_key"]["value"] == "not set"
    assert rows["supabase_service_role_key"]["secret"] is True


def test_config_show_strips_userinfo_from_other_urls(monkeypatch):
    monkeypatch.setenv("SUPABASE_URL", "https://user:p@ss/w0rd@abc.supabase.co")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://key:s3cr#t@127.0.0.1:4566")
    result = invoke(["config", "show", "-o", "json"])
    rows = {r["name"]: r["value"] for r in result.json}
    assert rows["supabase_url"] == "https://****@abc.supabase.co"
    assert rows["aws_endpoint_url_sqs"] == "http://****@127.0.0.1:4566"
    for part in ("w0rd", "p@ss", "s3cr", "user", "key:"):
        assert part not in result.stdout


def test_config_show_table_and_csv_and_md(monkeypatch):
    monkeypatch.setenv("SQS_QUEUE_URL", "http://localhost:4566/000000000000/jobs")
    table = invoke(["config", "show"]).stdout
    assert "sqs_queue_url" in table and "env:SQS_QUEUE_URL" in table
    csv_out = invoke(["config", "show", "-o", "csv"]).stdout.splitlines()
    assert csv_out[0] == "name,value,source"
    assert "sqs_queue_url,http://localhost:4566/000000000000/jobs,env:SQS_QUEUE_URL" in csv_out
    md = invoke(["config", "show", "-o", "md"]).stdout
    assert md.splitlines()[0].startswith("| name")
    jsonl = invoke(["config", "show", "-o", "jsonl"]).jsonl
    assert {r["name"] for r in jsonl} >= {"sqs_queue_url", "database_url"}


def test_env_file_from_stdin_supplies_secrets_without_flags(database_url):
    result = invoke(
        ["--env-file", "-", "config", "show", "-o", "json"],
        input=f"DATABASE_URL={database_url}\n",
    )
    rows = {r["name"]: r for r in result.json}
    assert rows["database_url"]["source"] == "env-file"
    assert rows["transport (effective)"]["value"] == "postgres"


def test_env_file_missing_is_a_config_error(tmp_path):
    result = invoke(["--env-file", str(tmp_path / "nope.env"), "config", "show"], code=3)
    assert "cannot read --env-file" in result.stderr


def test_broken_config_file_is_a_config_error(isolated_env):
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text("[profiles\n")
    result = invoke(["config", "show"], code=3)
    assert "cannot read" in result.stderr


def test_environment_overriding_an_explicit_profile_is_warned(monkeypatch):
    write_profile("sandbox", {"sqs_queue_url": "http://127.0.0.1:9/q", "aws_region": "x"})
    monkeypatch.setenv("SQS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/prod-jobs")
    result = invoke(["config", "show", "--profile", "sandbox", "-o", "json"])
    assert "SQS_QUEUE_URL from the environment override profile 'sandbox'" in result.stderr
    assert "warning" not in invoke(["config", "show", "-o", "json"]).stderr
