import pytest

from dbops.errors import NotFoundError, UsageError
from dbops.services import runbook

TEXT = """# Sample

Does things.

```console
dbops doctor
dbops audit  # exits: 0,1,2
dbops jobs recover --older-than {AGE}
$ dbops dlq redrive --max 5
```

```text
dbops not-a-step
```
"""


def book():
    return runbook.Runbook(
        name="sample",
        title="Sample",
        summary="Does things.",
        steps=runbook.parse_steps(TEXT),
        text=TEXT,
    )


def test_parse_steps_reads_console_blocks_only():
    steps = runbook.parse_steps(TEXT)
    assert [s.command for s in steps] == [
        "dbops doctor",
        "dbops audit",
        "dbops jobs recover --older-than {AGE}",
        "dbops dlq redrive --max 5",
    ]
    assert steps[1].ok_exits == [0, 1, 2]
    assert [s.destructive for s in steps] == [False, False, True, True]


def test_prepare_fills_inputs_and_adds_yes_or_dry_run():
    with pytest.raises(UsageError) as caught:
        runbook.prepare(book(), inputs={}, dry_run=False, yes=True)
    assert "AGE" in caught.value.message
    steps = runbook.prepare(book(), inputs={"AGE": "20m"}, dry_run=False, yes=True)
    assert steps[2].argv == ["dbops", "jobs", "recover", "--older-than", "20m", "--yes"]
    assert steps[0].argv == ["dbops", "doctor"]
    dry = runbook.prepare(book(), inputs={"AGE": "20m"}, dry_run=True, yes=False)
    assert dry[3].argv[-1] == "--dry-run"


def test_run_stops_at_the_first_failure_and_says_where_to_resume():
    steps = runbook.prepare(book(), inputs={"AGE": "1h"}, dry_run=False, yes=True)
    codes = {1: 0, 2: 2, 3: 5, 4: 0}
    executed = []

    def execute(step):
        executed.append(step.number)
        return codes[step.number]

    result = runbook.run(
        book(), steps=steps, start=1, dry_run=False, execute=execute, approve=lambda s: True
    )
    assert executed == [1, 2, 3]  # step 2's exit 2 is allowed by `# exits`
    assert result.ok is False and result.resume_from == 3
    assert [s.status for s in result.steps] == ["ok", "ok", "failed"]

    executed.clear()
    codes[3] = 0
    resumed = runbook.run(
        book(), steps=steps, start=3, dry_run=False, execute=execute, approve=lambda s: True
    )
    assert executed == [3, 4] and resumed.ok
    assert [s.status for s in resumed.steps] == ["skipped", "skipped", "ok", "ok"]


def test_run_refuses_destructive_steps_without_approval():
    steps = runbook.prepare(book(), inputs={"AGE": "1h"}, dry_run=False, yes=False)
    result = runbook.run(
        book(), steps=steps, start=1, dry_run=False, execute=lambda s: 0, approve=lambda s: False
    )
    assert result.steps[-1].status == "refused" and result.resume_from == 3


def test_from_out_of_range_is_a_usage_error():
    steps = runbook.parse_steps(TEXT)
    with pytest.raises(UsageError):
        runbook.run(
            book(), steps=steps, start=9, dry_run=False, execute=lambda s: 0, approve=lambda s: True
        )


def test_packaged_runbooks_load_and_unknown_is_not_found():
    names = {info.name for info in runbook.catalogue()}
    assert "deploy-migrations" in names
    assert runbook.load("deploy-migrations").steps
    with pytest.raises(NotFoundError):
        runbook.load("nope")
