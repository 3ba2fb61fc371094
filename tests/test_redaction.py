"""dbops.redaction: URL userinfo, connection-string passwords and fragments of secrets."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbops.redaction import (
    dsn_secrets,
    looks_unencoded,
    redact_urls,
    scrub_fragments,
    strip_password,
    strip_userinfo,
)
from dbops.services.actionlog import ActionRecorder
from dbops.services.redact import redact_arguments, redact_text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:pw@db.example.com:5432/app", "postgresql://****@db.example.com:5432/app"),
        ("postgresql://u:se@cret/pass word@h:1/app", "postgresql://****@h:1/app"),
        ("https://user:p@ss#w?rd&x@abc.supabase.co/x?y=1", "https://****@abc.supabase.co/x?y=1"),
        (
            "postgresql://h/db?password=s3cret&sslmode=require",
            "postgresql://h/db?password=****&sslmode=require",
        ),
        ("https://abc.supabase.co", "https://abc.supabase.co"),
        ("host=h password=x", "host=h password=x"),  # not a URL: see strip_password
    ],
)
def test_strip_userinfo_removes_everything_up_to_the_last_at(url, expected):
    assert strip_userinfo(url) == expected


def test_strip_password_handles_key_value_strings():
    for kv in (
        "host=h password='a b\\'c' dbname=x",
        "host=h password=se cret word dbname=x",
        "host=h dbname=x password='unterminated",
    ):
        assert strip_password(kv).split() == ["host=h", "dbname=x"]


def test_dsn_secrets_finds_the_password_however_it_is_written():
    assert "se@cret/pass word" in dsn_secrets("postgresql://u:se@cret/pass word@h/app")
    assert "p@ss" in dsn_secrets("postgresql://u:p%40ss@h/app")  # and decoded
    assert "s3cret" in dsn_secrets("postgresql://h/db?password=s3cret&sslmode=require")
    assert "a b'c" in dsn_secrets("host=h password='a b\\'c' dbname=x")
    assert "se cret word" in dsn_secrets("host=h password=se cret word dbname=x")
    assert dsn_secrets("postgresql://u@h/app") == []


def test_looks_unencoded():
    assert looks_unencoded("postgresql://u:p@ss@h/db")
    assert looks_unencoded("postgresql://u:p/ss@h/db")
    assert looks_unencoded("postgresql://u:p ss@h/db")
    assert looks_unencoded("postgresql://u:100%@h/db")
    assert not looks_unencoded("postgresql://u:p%40ss@h/db")
    assert not looks_unencoded("postgresql://h/db?application_name=x")
    assert not looks_unencoded("host=h password=p@ss")


def test_redact_urls_in_free_text():
    text = "to postgresql://u:p@ss@h/db and https://k:v@x.example/q, mail ops@example.com"
    assert redact_urls(text) == (
        "to postgresql://****@h/db and https://****@x.example/q, mail ops@example.com"
    )
    assert redact_urls("host=h password='a b' x=1") == "host=h password=**** x=1"


def test_scrub_fragments_removes_every_run_shared_with_a_secret():
    secret = "se@cret/pass word"
    text = "failed to resolve host 'cret': use pass word here; Cret"
    out = scrub_fragments(text, [secret])
    assert out == "failed to resolve host '****': use **** here; ****"
    assert scrub_fragments("abc", [secret]) == "abc"
    assert scrub_fragments("nothing here", ["ab"]) == "nothing here"  # too short to matter
    # A secret that contains the mask itself still leaves no part behind.
    assert "****" not in scrub_fragments("x ****abc y", ["****abc"])


PASSWORD = st.text(st.sampled_from("QXZJKVWqxzjkvw@:/%#?& "), min_size=8, max_size=24).filter(
    lambda p: sum(c.isalpha() for c in p) >= 4
)


@settings(max_examples=300, deadline=None)
@given(password=PASSWORD)
def test_no_part_of_a_password_survives_any_helper(password):
    parts = {password[i : i + 4] for i in range(len(password) - 3)}
    url = f"postgresql://dbops:{password}@db.example.com:5432/app"
    kv = f"host=db.example.com password={password} dbname=app"
    for shown in (
        strip_userinfo(url),
        strip_password(url),
        strip_password(kv),
        scrub_fragments(f"failed: {url} / {kv} / {quote(password)}", dsn_secrets(url)),
        scrub_fragments(f"failed: {kv}", dsn_secrets(kv)),
    ):
        assert not [p for p in parts if p in shown], shown
    assert strip_userinfo(url).endswith("@db.example.com:5432/app")


def test_action_log_arguments_and_error_keep_no_url_credentials(tmp_path):
    """The recorder redacts URL userinfo in arguments and the error, and scrubs every part
    of the secrets it is given (the CLI passes the configured ones)."""
    recorder = ActionRecorder(
        store=None,
        command="dlq export",
        arguments={
            "out": "s3://AKIAKEY:se@cret/xyz@bucket/key",
            "urls": ["https://u:p@ss word@h/x"],
            "dsn": "postgresql://u:QX@ZJ@h/db",
        },
        operator="t",
        fallback_file=tmp_path / "log.jsonl",
        secrets=["QX@ZJ:KV ss word"],
    )
    recorder.write("error", "database h unreachable: host 'ZJ:KV' via postgresql://u:QX@ZJ@h/db")
    record = json.loads((tmp_path / "log.jsonl").read_text())
    text = json.dumps(record)
    for part in ("se@cret", "cret", "AKIAKEY", "QX@Z", "ZJ:K", "p@ss", "ss w"):
        assert part not in text, (part, text)
    assert record["arguments"]["out"] == "s3://****@bucket/key"
    assert record["arguments"]["dsn"] == "****"  # a secret-named argument: masked whole
    assert redact_text("postgresql://u:a@b/c@h/db") == "postgresql://****@h/db"
    assert redact_arguments({"to": "https://u:p@h/x"}) == {"to": "https://****@h/x"}
