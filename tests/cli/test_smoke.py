from tests.helpers import invoke


def test_doctor_passes_with_full_env(env):
    result = invoke(["doctor", "-o", "json"])
    statuses = {c["name"]: c["status"] for c in result.json["checks"]}
    assert statuses["database reachable"] == "pass"
    assert statuses["dbops migrations"] == "pass"
    assert statuses["redrive policy"] == "pass"
