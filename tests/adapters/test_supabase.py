"""SupabaseStore specifics, end to end through supabase-py over HTTP to the PostgREST stub
(tests/postgrest_stub.py): keys, unreachable servers, PostgREST error shapes, and the CLI
on the Supabase transport. The service key must never be printed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from postgrest.exceptions import APIError

from dbops.adapters.supabase import SupabaseStore, translate_error
from dbops.errors import (
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    RemoteError,
    UsageError,
)
from tests.helpers import free_port, invoke, one_line_error


@pytest.fixture
def sb(supabase_url, supabase_key):
    store = SupabaseStore(supabase_url, supabase_key)
    yield store
    store.close()


def _no_secret(text: str, key: str) -> None:
    assert key not in text
    assert key[-12:] not in text


# --------------------------------------------------------------------------- transport
def test_calls_go_through_postgrest_rpc_with_both_key_headers(
    sb, postgrest_stub, supabase_url, supabase_key
):
    sb.call("dbops_action_log_list", {"p_since_seconds": 60, "p_limit": 5})
    request = postgrest_stub.requests(supabase_url)[-1]
    assert request["method"] == "POST"
    assert request["path"].endswith("/rest/v1/rpc/dbops_action_log_list")
    assert request["headers"]["apikey"] == supabase_key
    assert request["headers"]["authorization"] == f"Bearer {supabase_key}"
    assert request["headers"]["content-profile"] == "public"
    assert json.loads(request["body"]) == {"p_since_seconds": 60, "p_limit": 5}


def test_target_is_host_and_port_only(supabase_key):
    store = SupabaseStore("https://abcdefgh.supabase.co/some/path?x=1", supabase_key)
    assert store.target == "abcdefgh.supabase.co"


def test_wrong_key_is_a_credentials_error_without_the_key(supabase_url, supabase_key):
    wrong = "sb-wrong-service-role-key-0123456789"
    store = SupabaseStore(supabase_url, wrong)
    try:
        with pytest.raises(ConfigError) as caught:
            store.call("dbops_ping")
    finally:
        store.close()
    text = caught.value.one_line()
    assert "refused" in text and "SUPABASE_SERVICE_ROLE_KEY" in text
    assert "\n" not in text
    _no_secret(text, wrong)
    _no_secret(text, supabase_key)


def test_server_down_is_a_remote_error(supabase_key):
    store = SupabaseStore(f"http://127.0.0.1:{free_port()}", supabase_key, timeout=2)
    with pytest.raises(RemoteError) as caught:
        store.ping()
    text = caught.value.one_line()
    assert "unreachable" in text and "\n" not in text
    _no_secret(text, supabase_key)


def test_slow_server_times_out(supabase_url, supabase_key, db):
    db.execute(
        "create function dbops_test_sleep(p_seconds float8) returns table (slept boolean) "
        "language sql as $$ select true from pg_sleep(p_seconds) $$"
    )
    store = SupabaseStore(supabase_url, supabase_key, timeout=0.3)
    try:
        with pytest.raises(RemoteError, match="did not answer in time"):
            store.call("dbops_test_sleep", {"p_seconds": 2})
    finally:
        store.close()


def test_invalid_url_is_a_configuration_error(supabase_key):
    with pytest.raises(ConfigError) as caught:
        SupabaseStore("abcdefgh.supabase.co", supabase_key).call("dbops_ping")
    assert "SUPABASE_URL" in caught.value.one_line()
    _no_secret(caught.value.one_line(), supabase_key)


def test_a_proxy_error_page_is_one_line(sb, postgrest_stub, supabase_url, supabase_key):
    page = "<html>\n<body><h1>502 Bad Gateway</h1>\n</body>\n</html>"
    postgrest_stub.inject(supabase_url, 502, page)
    with pytest.raises(RemoteError) as caught:
        sb.call("dbops_ping")
    text = caught.value.one_line()
    assert "502" in text and "<html>" not in text and "\n" not in text
    assert sb.call("dbops_ping")[0]["ok"] is True  # the next call is fine


def test_an_echoed_key_is_scrubbed(sb, postgrest_stub, supabase_url, supabase_key):
    body = json.dumps({"code": "XX000", "message": f"bad token {supabase_key}", "details": None})
    postgrest_stub.inject(supabase_url, 500, body, "application/json")
    with pytest.raises(RemoteError) as caught:
        sb.call("dbops_ping")
    assert "****" in caught.value.one_line()
    _no_secret(caught.value.one_line(), supabase_key)


def test_result_shapes_match_the_postgres_transport(sb, db):
    db.execute(
        """
        create function dbops_test_scalar(p_n int) returns int language sql as $$ select p_n * 2 $$;
        create function dbops_test_setof(p_n int) returns setof int
            language sql as $$ select generate_series(1, p_n) $$;
        create function dbops_test_one_col() returns table (id bigint)
            language sql as $$ select 7::bigint $$;
        create function dbops_test_empty() returns table (id bigint, name text)
            language sql as $$ select 1::bigint, 'x' where false $$;
        """
    )
    assert sb.call("dbops_test_scalar", {"p_n": 21}) == [{"dbops_test_scalar": 42}]
    assert sb.call("dbops_test_setof", {"p_n": 2}) == [
        {"dbops_test_setof": 1},
        {"dbops_test_setof": 2},
    ]
    assert sb.call("dbops_test_one_col") == [{"id": 7}]
    assert sb.call("dbops_test_empty") == []


def test_void_functions_and_read_only_get_calls(sb, db):
    db.execute(
        "create function dbops_test_void(p_note text) returns void "
        "language sql as $$ insert into dbops_action_log (operator, command, outcome, "
        "started_at) values ('x', p_note, 'ok', now()) $$"
    )
    assert sb.call("dbops_test_void", {"p_note": "via rpc"}) == []
    assert db.execute("select command from dbops_action_log").fetchone() == {"command": "via rpc"}
    # rpc(get=True): arguments in the query string, run read-only, as PostgREST does.
    got = sb.client.rpc("dbops_action_log_list", {"p_since_seconds": 60, "p_limit": 5}, get=True)
    assert [r["command"] for r in got.execute().data] == ["via rpc"]
    with pytest.raises(APIError) as caught:
        sb.client.rpc("dbops_test_void", {"p_note": "no"}, get=True).execute()
    assert caught.value.code == "25006"


# --------------------------------------------------------------------------- the stub itself
def _post(url: str, body: object, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_stub_requires_apikey_and_bearer(supabase_url, supabase_key):
    url = f"{supabase_url}/rest/v1/rpc/dbops_ping"
    both = {"apikey": supabase_key, "Authorization": f"Bearer {supabase_key}"}
    assert _post(url, {}, both)[0] == 200
    status, body = _post(url, {}, {"Authorization": f"Bearer {supabase_key}"})
    assert status == 401 and body["message"] == "Invalid API key"
    status, body = _post(url, {}, {"apikey": supabase_key, "Authorization": "Bearer nope"})
    assert status == 401 and body["code"] == "PGRST301"
    status, body = _post(url, {}, {"apikey": supabase_key})
    assert status == 401 and body["code"] == "PGRST301"


def test_stub_error_statuses(supabase_url, supabase_key, db):
    db.execute(
        """
        create function dbops_test_raise(p_code text) returns table (x int) language plpgsql as $$
        begin raise exception 'boom %', p_code using errcode = p_code; end $$;
        """
    )
    headers = {"apikey": supabase_key, "Authorization": f"Bearer {supabase_key}"}
    base = f"{supabase_url}/rest/v1/rpc"
    status, body = _post(f"{base}/dbops_nope", {"p_a": 1}, headers)
    assert status == 404 and body["code"] == "PGRST202"
    assert set(body) == {"code", "message", "details", "hint"}
    for code, expected in [("22023", 400), ("P0002", 500), ("42501", 403), ("23505", 409)]:
        status, body = _post(f"{base}/dbops_test_raise", {"p_code": code}, headers)
        assert (status, body["code"], body["message"]) == (expected, code, f"boom {code}")
    status, body = _post(f"{base}/not_dbops", {}, headers)
    assert status == 404
    status, body = _post(f"{base}/dbops_ping", [1, 2], headers)
    assert status == 400 and body["code"] == "PGRST102"


def test_stub_unknown_project_is_404(postgrest_url, supabase_key):
    store = SupabaseStore(f"{postgrest_url}/nosuchproject", supabase_key)
    with pytest.raises(RemoteError):
        store.call("dbops_ping")
    store.close()


def test_translate_error_shapes():
    host = "ref.supabase.co"
    gateway = APIError({"message": "No API key found in request", "hint": "No `apikey`"})
    assert isinstance(translate_error(gateway, host), ConfigError)
    assert isinstance(
        translate_error(APIError({"code": "P0002", "message": "x"}), host), NotFoundError
    )
    assert isinstance(
        translate_error(APIError({"code": "22P02", "message": "x"}), host), UsageError
    )
    assert isinstance(
        translate_error(APIError({"code": "P0001", "message": "x"}), host), UsageError
    )
    missing = translate_error(APIError({"code": "42883", "message": "no fn"}), host)
    assert isinstance(missing, ConfigError) and "dbops db migrate --print" in missing.one_line()
    timeout = translate_error(APIError({"code": "57014", "message": "canceling statement"}), host)
    assert isinstance(timeout, RemoteError) and "canceling statement" in timeout.one_line()
    down = translate_error(APIError({"code": "PGRST000", "message": "Could not\nconnect"}), host)
    assert isinstance(down, RemoteError) and "\n" not in down.one_line()


def test_a_missing_grant_is_a_config_error_naming_the_privilege(supabase_url, supabase_key, db):
    """PostgREST answers 42501 (HTTP 403) when the key's role lacks EXECUTE: exit 3 with
    the privilege and function named, like the direct transport, and never the key."""
    db.execute(
        """
        create function dbops_test_denied() returns table (x int) language plpgsql as $$
        begin raise exception 'permission denied for function dbops_jobs_fail'
              using errcode = '42501'; end $$;
        """
    )
    store = SupabaseStore(supabase_url, supabase_key)
    try:
        with pytest.raises(PermissionDeniedError) as caught:
            store.call("dbops_test_denied")
    finally:
        store.close()
    line = caught.value.one_line()
    assert caught.value.exit_code == 3
    assert "lacks EXECUTE on function dbops_jobs_fail" in line
    assert "SUPABASE_SERVICE_ROLE_KEY" in line
    _no_secret(line, supabase_key)


# --------------------------------------------------------------------------- CLI
def test_cli_log_and_db_status_on_the_supabase_transport(supabase_env, supabase_key, db):
    db.execute(
        "insert into dbops_action_log (operator, command, outcome, started_at, counts) "
        "values ('alice', 'dlq redrive', 'ok', now(), '{\"moved\": 2}')"
    )
    log = invoke(["log", "-o", "json"])
    assert [(e["operator"], e["command"], e["counts"]) for e in log.json] == [
        ("alice", "dlq redrive", {"moved": 2})
    ]
    status = invoke(["db", "status", "-o", "json"])
    assert status.json and {row["status"] for row in status.json} == {"applied"}
    for result in (log, status):
        _no_secret(result.stdout + result.stderr, supabase_key)


def test_cli_doctor_reports_the_supabase_transport(
    supabase_env, supabase_key, queues, sqs_endpoint, monkeypatch
):
    monkeypatch.setenv("SQS_QUEUE_URL", queues.main_url)
    monkeypatch.setenv("SQS_DLQ_URL", queues.dlq_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    result = invoke(["doctor", "-o", "json"])
    checks = {c["name"]: c for c in result.json["checks"]}
    assert "transport supabase" in checks["configuration"]["detail"]
    assert checks["database reachable"]["status"] == "pass"
    assert checks["database reachable"]["detail"].startswith("supabase")
    assert checks["dbops migrations"]["status"] == "pass"
    _no_secret(result.stdout + result.stderr, supabase_key)
    table = invoke(["doctor"])
    assert "supabase" in table.stdout
    _no_secret(table.stdout + table.stderr, supabase_key)


def test_cli_db_migrate_on_supabase_says_to_use_print(supabase_env, supabase_key):
    result = invoke(["db", "migrate"], code=3)
    line = one_line_error(result.stderr)
    assert "--print" in line
    _no_secret(result.stdout + result.stderr, supabase_key)
    printed = invoke(["db", "migrate", "--print"])
    assert "create or replace function dbops_ping" in printed.stdout
    _no_secret(printed.stdout + printed.stderr, supabase_key)


def test_cli_wrong_key_and_server_down(supabase_env, monkeypatch):
    wrong = "sb-wrong-service-role-key-0123456789"
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", wrong)
    result = invoke(["log"], code=3)  # credentials
    assert "refused" in one_line_error(result.stderr)
    _no_secret(result.stdout + result.stderr, wrong)

    monkeypatch.setenv("SUPABASE_URL", f"http://127.0.0.1:{free_port()}")
    result = invoke(["db", "status", "-o", "json"], code=5)
    assert "unreachable" in one_line_error(result.stderr)
    assert result.stdout == ""
    _no_secret(result.stdout + result.stderr, wrong)


def test_cli_unmigrated_project_says_to_migrate(
    monkeypatch, postgrest_stub, empty_database_url, supabase_key
):
    with postgrest_stub.project(empty_database_url) as url:
        monkeypatch.setenv("SUPABASE_URL", url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", supabase_key)
        result = invoke(["log"], code=3)
        assert "dbops db migrate --print" in one_line_error(result.stderr)
        status = invoke(["db", "status", "-o", "json"])
        assert {row["status"] for row in status.json} == {"pending"}


# --------------------------------------------------------------------------- redirects
class _Recorder:
    """A tiny HTTP server on 127.0.0.1: answers `status` (with `location`) to every request
    and records each request's method, path and headers."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
                body = b"[]" if status == 200 else b""
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def redirect_pair():
    """`other` (another origin: another port) records what reaches it; `front` answers 307
    to the same path on `other`."""
    other = _Recorder()
    front = _Recorder(307, location=f"{other.url}/rest/v1/rpc/dbops_action_log_list")
    yield front, other
    front.stop()
    other.stop()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_naming_its_target_and_the_key_stays_home(status, supabase_key):
    other = _Recorder()
    front = _Recorder(status, location=f"{other.url}/rest/v1/rpc/dbops_action_log_list")
    store = SupabaseStore(front.url, supabase_key)
    try:
        with pytest.raises(RemoteError) as caught:
            store.call("dbops_action_log_list", {"p_since_seconds": 60, "p_limit": 5})
    finally:
        store.close()
        front.stop()
        other.stop()
    line = caught.value.one_line()
    assert f"127.0.0.1:{other.port}" in line and "redirect" in line
    assert int(caught.value.exit_code) == 5
    assert len(front.requests) == 1  # asked once, not retried
    assert front.requests[0]["headers"]["apikey"] == supabase_key  # (it is the project)
    assert other.requests == []  # never followed: no apikey, no Authorization sent there
    _no_secret(line, supabase_key)


def test_cli_refuses_a_redirect_in_one_line_exit_5(redirect_pair, supabase_key, monkeypatch):
    front, other = redirect_pair
    monkeypatch.setenv("SUPABASE_URL", front.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", supabase_key)
    for args in (["log", "-o", "json"], ["jobs", "list"]):
        result = invoke(args, code=5)
        line = one_line_error(result.stderr)
        assert f"redirecting to 127.0.0.1:{other.port}" in line
        _no_secret(result.stdout + result.stderr, supabase_key)
    assert front.requests and other.requests == []


def test_a_redirect_target_is_named_by_host_only(supabase_key):
    """The Location's userinfo, path and query (which may carry tokens) are not shown."""
    other = _Recorder()
    front = _Recorder(302, location="http://u:tok3n-secret@evil.example:8443/p?token=SECRETQ")
    store = SupabaseStore(front.url, supabase_key)
    try:
        with pytest.raises(RemoteError) as caught:
            store.call("dbops_action_log_list", {"p_since_seconds": 60, "p_limit": 5})
    finally:
        store.close()
        front.stop()
        other.stop()
    line = caught.value.one_line()
    assert "redirecting to evil.example:8443:" in line
    for part in ("tok3n", "SECRETQ", "/p", "u:"):
        assert part not in line


def test_supabase_url_credentials_never_become_the_target(supabase_key):
    store = SupabaseStore("https://user:p@ss/w0rd@abcdefgh.supabase.co/x", supabase_key)
    assert store.target == "abcdefgh.supabase.co"
    store.close()
