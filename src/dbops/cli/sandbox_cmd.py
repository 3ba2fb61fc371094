"""`dbops sandbox`: the embedded local stack (PostgreSQL via pgserver + SQS via moto)."""

from __future__ import annotations

import shlex
from enum import StrEnum
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.cli.output import Output, OutputOpt, message, print_table, render, write

app = typer.Typer(
    help="Run an embedded Postgres + SQS sandbox (for demos, runbooks and trying dbops).",
    no_args_is_help=True,
)


class ScenarioName(StrEnum):
    incident = "incident"
    clean = "clean"


class SchemaChoice(StrEnum):
    standard = "standard"
    legacy = "legacy"


def ready() -> None:
    """Prepare the sandbox folder, then fail with exit 3 when the extra is missing."""
    from dbops.sandbox import runtime

    runtime.prepare_environment()  # before pgserver is imported (it reads XDG_RUNTIME_DIR)
    _deps.require_sandbox_extra()


def _status_table(status: Any) -> None:
    rows = [
        {
            "service": s.name,
            "running": s.running,
            "pid": s.pid,
            "detail": s.detail,
        }
        for s in (status.postgres, status.sqs)
    ]
    schema = f" (schema {status.schema_name})" if status.schema_name else ""
    print_table(
        rows, ["service", "running", "pid", "detail"], title=f"sandbox: {status.folder}{schema}"
    )


@app.command("up")
def up(
    schema: Annotated[
        SchemaChoice | None,
        typer.Option(
            "--schema",
            help="Application schema: standard, or legacy (production-shaped: uuid "
            "customer ids, no 'cancelled', legacy history rows, RLS). Default: the one in "
            "use, else standard. Naming the other one switches; both keep their data.",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Start the sandbox (Postgres + SQS) and write the `sandbox` profile.

    Creates the queues (dbops-jobs, dbops-jobs-dlq) and applies all migrations: the
    application schema (`--schema standard` or `legacy`) and dbops' own.
    Re-running it while both servers run changes nothing.

    Example:
        dbops sandbox up --schema legacy && dbops doctor --profile sandbox
    """
    ready()
    from dbops.sandbox import runtime

    result = runtime.up(schema.value if schema else None)
    if output is not Output.table:
        render(result, output)
        return
    st = result.status
    if result.switched_from:
        message(
            f"switched the sandbox from the {result.switched_from} to the "
            f"{result.schema_name} schema (database {st.database}; the "
            f"{result.switched_from} schema's data is kept)"
        )
    elif result.already_running:
        message(
            f"sandbox already running (postgres pid {st.postgres.pid}, sqs {st.sqs.detail})"
            + ("" if result.migrations_applied or result.profile_written else "; nothing to do")
        )
    else:
        message(
            f"started {', '.join(result.started)} with the {result.schema_name} schema; "
            f"sandbox folder {st.folder}"
        )
    if result.migrations_applied:
        message(
            f"applied {len(result.migrations_applied)} migration(s): "
            + ", ".join(result.migrations_applied)
        )
    if result.profile_written:
        message(f"wrote profile 'sandbox' to {result.profile_path}")
    message("next: dbops sandbox seed, dbops demo, or any command with --profile sandbox")


@app.command("down")
def down(output: OutputOpt = Output.table) -> None:
    """Stop the sandbox's Postgres and SQS servers.

    Postgres data is kept; the queues (in moto's memory) are not.

    Example:
        dbops sandbox down
    """
    ready()
    from dbops.sandbox import runtime

    result = runtime.down()
    if output is not Output.table:
        render(result, output)
        return
    for line in result.stopped:
        message(f"stopped {line}")
    if not result.stopped:
        message("nothing to stop: the sandbox is not running")
    elif result.not_running:
        message(f"already stopped: {', '.join(result.not_running)}")


@app.command("status")
def status(output: OutputOpt = Output.table) -> None:
    """Show whether the sandbox's Postgres and SQS servers run.

    Example:
        dbops sandbox status -o json
    """
    ready()
    from dbops.sandbox import runtime

    render(runtime.status(), output, table=_status_table)


@app.command("env")
def env(output: OutputOpt = Output.table) -> None:
    """Print shell `export` lines for the running sandbox.

    DATABASE_URL, SQS_QUEUE_URL, SQS_DLQ_URL, AWS_ENDPOINT_URL_SQS, AWS_REGION and
    AWS_DEFAULT_REGION (boto3 and aws-cli v1 read only the latter), ... The sandbox's
    database has no password; the AWS keys are dummies that moto accepts.

    Example:
        eval "$(dbops sandbox env)"
    """
    ready()
    from dbops.sandbox import runtime

    values = runtime.env_vars(runtime.require_running())
    if output is Output.table:
        write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
        return
    render(values, output)


@app.command("seed")
def seed(
    scenario: Annotated[
        ScenarioName,
        typer.Option("--scenario", help="incident: everything wrong at once; clean: healthy."),
    ] = ScenarioName.incident,
    schema: Annotated[
        SchemaChoice | None,
        typer.Option(
            "--schema",
            help="The schema the sandbox must be running (default: the one in use); "
            "another one is refused (exit 6): switch with `dbops sandbox up --schema`.",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Reset the sandbox's data to the documented scenario (incident or clean).

    Wipes the app tables (jobs, job_results, worker_heartbeats, queue_history,
    rate_limit_requests), dbops' own state about them (recoveries, runs, audit runs, the
    action log, redrive journals) and both queues first. Every seed draws fresh ids; the
    scenario (shapes, ages, counts) is the same each time. The scenario is fitted to the schema in
    use: on `legacy`, customer ids are UUIDs, `cancelled` jobs are `failed`, and some
    history rows are legacy status_from/status_to transitions.

    Only ever touches the sandbox's own servers, whatever DATABASE_URL says.

    Example:
        dbops sandbox seed --scenario incident --schema legacy -o json
    """
    ready()
    from dbops.sandbox import seed as seeding

    result = seeding.run(
        scenario.value,
        schema=schema.value if schema else None,
    )
    if output is not Output.table:
        render(result, output)
        return
    skip = ("scenario", "schema", "customer_ids", "statuses_mapped", "seed", "jobs_by_status")
    rows = [{"what": k, "count": v} for k, v in result.model_dump().items() if k not in skip]
    rows += [{"what": f"jobs {k}", "count": v} for k, v in result.jobs_by_status.items()]
    rows += [
        {"what": f"status {k} written as", "count": v} for k, v in result.statuses_mapped.items()
    ]
    variant = f" ({result.schema_name} schema)" if result.schema_name else ""
    print_table(rows, ["what", "count"], title=f"seeded scenario '{result.scenario}'{variant}")
