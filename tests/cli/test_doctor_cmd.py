from tests.helpers import free_port, invoke, one_line_error


def statuses(result):
    return {c["name"]: c["status"] for c in result.json["checks"]}


def test_doctor_all_pass(env):
    result = invoke(["doctor", "-o", "json"])
    assert result.json["ok"] is True and result.json["exit_code"] == 0
    assert set(statuses(result).values()) <= {"pass", "skip"}
    assert statuses(result)["SQS main queue"] == "pass"
    assert statuses(result)["SQS dead-letter queue"] == "pass"
    assert statuses(result)["redrive policy"] == "pass"
    table = invoke(["doctor"]).stdout
    assert "PASS" in table and "FAIL" not in table


def test_doctor_without_configuration_exits_3():
    result = invoke(["doctor", "-o", "json"], code=3)
    assert statuses(result)["configuration"] == "fail"


def test_doctor_nonexistent_queue_exits_5_naming_the_queue(env, monkeypatch, sqs_endpoint):
    monkeypatch.setenv("SQS_QUEUE_URL", f"{sqs_endpoint}/000000000000/no-such-queue-xyz")
    result = invoke(["doctor"], code=5)
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1
    assert "no-such-queue-xyz" in failing[0] and "does not exist" in failing[0]


def test_doctor_database_down_exits_5_without_leaking_the_password(env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://ops:s3cr3t-pw@127.0.0.1:{free_port()}/app")
    monkeypatch.setenv("DBOPS_CONNECT_TIMEOUT", "1")
    result = invoke(["doctor", "-o", "json"], code=5)
    assert statuses(result)["database reachable"] == "fail"
    assert "s3cr3t-pw" not in result.stdout + result.stderr


def test_doctor_pending_migrations_fail(env, db):
    db.execute("delete from dbops_schema_migrations where version = '0001'")
    result = invoke(["doctor", "-o", "json"], code=5)
    assert statuses(result)["dbops migrations"] == "fail"


def test_doctor_wrong_redrive_target(env, queues, monkeypatch):
    other = queues.client.create_queue(QueueName=queues.main_name + "-other")["QueueUrl"]
    monkeypatch.setenv("SQS_DLQ_URL", other)
    result = invoke(["doctor", "-o", "json"], code=5)
    assert statuses(result)["redrive policy"] == "fail"


def test_sqs_endpoint_down_is_a_clean_error(env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    result = invoke(["doctor", "-o", "json"], code=5)
    assert statuses(result)["SQS main queue"] == "fail"
    assert "Traceback" not in result.stderr


def test_nonexistent_queue_in_a_command_is_one_line_exit_4(env, monkeypatch, sqs_endpoint):
    # Through the error boundary (not doctor's report): adapter NotFoundError -> exit 4.
    from dbops.adapters.sqs import SqsQueues
    from dbops.errors import NotFoundError

    queues = SqsQueues(region="us-east-1", endpoint=sqs_endpoint)
    try:
        queues.get_attributes(f"{sqs_endpoint}/000000000000/missing-q")
    except NotFoundError as exc:
        assert "missing-q" in exc.one_line()
    else:
        raise AssertionError("expected NotFoundError")
    _ = one_line_error  # used by other tests
