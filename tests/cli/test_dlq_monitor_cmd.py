"""`dbops dlq monitor --notify slack`: the alert's next commands name the profile used
(a local webhook receiver over real HTTP; see tests/cli/test_dlq_cmd.py)."""

from __future__ import annotations

from typing import Any

from dbops.services import slack
from tests.cli.test_dlq_cmd import (  # noqa: F401 - slack_receiver is a fixture
    Receiver,
    job_body,
    send,
    slack_receiver,
)
from tests.helpers import invoke


def _next_steps(payload: dict[str, Any]) -> list[str]:
    for block in payload["blocks"]:
        text = block.get("text", {}).get("text", "")
        if text.startswith("*Next steps*"):
            return text.split("```")[1].splitlines()
    raise AssertionError("no next steps in the alert")


def test_alert_commands_name_the_profile_the_monitor_ran_with(
    env,
    slack_receiver: Receiver,  # noqa: F811
    isolated_env,
    monkeypatch,
):
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text("[profiles.on-call]\nstale_threshold_minutes = 10\n")
    send(env.client, env.dlq_url, [job_body("job-1")])

    invoke(["dlq", "monitor", "--notify", "slack", "--profile", "on-call"], code=1)
    steps = _next_steps(slack_receiver.payloads[-1])
    assert steps == [
        f"dbops dlq list --queue {env.dlq_name} --profile on-call",
        f"dbops dlq export --queue {env.dlq_name} --out {env.dlq_name}-review.jsonl "
        "--profile on-call",
        f"dbops dlq redrive --queue {env.dlq_name} --dry-run --profile on-call",
    ]
    # every suggested command parses with the current CLI
    for line in steps:
        assert invoke([*line.split()[1:], "--help"], code=0)

    send(env.client, env.dlq_url, [job_body("job-2")])  # grown: alerts again
    monkeypatch.setenv("DBOPS_PROFILE", "on-call")
    invoke(["dlq", "monitor", "--notify", "slack"], code=1)
    assert all(s.endswith("--profile on-call") for s in _next_steps(slack_receiver.payloads[-1]))


def test_alert_commands_have_no_profile_when_none_was_used(
    env,
    slack_receiver: Receiver,  # noqa: F811
):
    send(env.client, env.dlq_url, [job_body("job-1")])
    invoke(["dlq", "monitor", "--notify", "slack"], code=1)
    steps = _next_steps(slack_receiver.payloads[-1])
    assert len(steps) == 3 and not any("--profile" in s for s in steps)


def test_next_commands_quote_an_odd_profile_name():
    first = slack.next_commands("q-dlq", profile="a b")[0]
    assert first == "dbops dlq list --queue q-dlq --profile 'a b'"
