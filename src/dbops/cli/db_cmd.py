"""`dbops db`: install and inspect dbops' own SQL objects."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from dbops.cli import _deps
from dbops.cli._common import DryRunOpt, YesOpt, confirm, recorder
from dbops.cli.output import Output, OutputOpt, message, print_table, render, to_data, write
from dbops.durations import parse_duration
from dbops.errors import ConfigError, DbopsError, UsageError
from dbops.services import migrations, roles

app = typer.Typer(help="Install and inspect dbops' SQL objects (migrations).", no_args_is_help=True)


@app.command("migrate")
def migrate(
    print_sql: Annotated[
        bool, typer.Option("--print", help="Print the SQL (for the Supabase SQL editor).")
    ] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Apply pending dbops migrations (idempotent; safe to re-run).

    Shows the pending migrations, asks on a terminal (--yes to skip), and logs the run
    to the action log.

    Example:
        dbops db migrate --dry-run
        dbops db migrate --print > dbops.sql
    """
    if print_sql:
        write(migrations.render_script())
        return
    store = _deps.store()
    try:
        migrations.require_compatible(store=store)
    except DbopsError:
        # Refused before anything changed; the action log still records the attempt.
        with recorder("db migrate", {"dry_run": dry_run}, dry_run=dry_run):
            raise
    pending = migrations.pending(store=store)
    if pending and not dry_run:
        message("pending: " + ", ".join(f"{m.version}_{m.name}" for m in pending))
        confirm(f"apply {len(pending)} migration(s)", yes=yes, dry_run=dry_run)

    def run() -> migrations.MigrateResult:
        """The plan (a dry run), or the migrations applied."""
        return migrations.plan(store=store) if dry_run else migrations.migrate(store=store)

    if pending:
        with recorder("db migrate", {"dry_run": dry_run}, dry_run=dry_run) as rec:
            result = run()
            rec.counts = {"applied": len(result.applied)}
    else:
        result = run()
    if output is Output.table:
        verb = "would apply" if dry_run else "applied"
        if result.applied:
            message(f"{verb} {len(result.applied)} migration(s): {', '.join(result.applied)}")
        else:
            message(f"up to date ({result.already_applied} applied)")
        return
    render(result, output)


@app.command("check")
def check(output: OutputOpt = "table") -> None:  # type: ignore[assignment]
    """Check that dbops can work with this database's application schema (read-only).

    Lists every application table and column dbops reads or writes: what it expects, what
    it found, and whether that works; plus the status values the jobs table allows. Exits
    0 when compatible, 3 with a one-line summary when not. Changes nothing, and works
    before `dbops db migrate` (which runs the same check first).

    Example:
        dbops db check
        dbops db check -o json | jq '.columns[] | select(.ok | not)'
    """
    report = migrations.check(store=_deps.store())
    if output in (Output.json, Output.jsonl):
        render(report, output)
    else:
        render(
            report.columns,
            output,
            columns=["table", "column", "expected", "found", "ok", "note"],
        )
        allowed = report.status_values
        if report.compatible:
            message(
                "jobs.status allows: "
                + (", ".join(allowed) if allowed is not None else "any value (no constraint)")
            )
    if not report.compatible:
        raise ConfigError(report.summary)
    if output is Output.table:
        message(report.summary)


@app.command("status")
def status(output: OutputOpt = "table") -> None:  # type: ignore[assignment]
    """Show each dbops migration as applied, pending or changed.

    Example:
        dbops db status -o json
    """
    render(
        migrations.status(store=_deps.store()),
        output,
        columns=["version", "name", "status", "applied_at"],
    )


@app.command("roles")
def roles_cmd(
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Create the roles and grant (needs DATABASE_URL)."),
    ] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Least-privilege roles for scripts and CI: dbops_readonly and dbops_operator.

    Prints the SQL that creates two NOLOGIN roles (when missing) and grants them what they
    need, generated from the catalog: dbops_readonly runs every read command (audit, list,
    show, stats...) and nothing that writes; dbops_operator runs everything dbops does.
    Paste it into the Supabase SQL editor, or run it with --apply (direct Postgres; shows
    the grants, asks on a terminal, logs to the action log). Re-running is safe. Then make
    a LOGIN user a member, e.g. `create role ci_audit login password '...' in role
    dbops_readonly`, and point CI's DATABASE_URL at it.

    Example:
        dbops db roles > dbops-roles.sql
        dbops db roles --apply --dry-run
        dbops db roles --apply --yes
    """
    if not apply:
        if dry_run or yes:
            raise UsageError("--dry-run and --yes go with --apply")
        report = roles.plan()
        if output is Output.table:
            write(report.sql)
        else:
            render(report if output is Output.json else report.grant_rows(), output)
        return
    store = _deps.store()
    preview = roles.resolve(store=store)
    if output is Output.table:
        print_table(preview.grant_rows(), ["role", "privileges", "on", "objects", "which"])
        message(preview.summary())
    confirm(f"create or update roles {', '.join(roles.ROLES)}", yes=yes, dry_run=dry_run)
    with recorder("db roles", {"apply": True}, dry_run=dry_run) as rec:
        result = (
            preview.model_copy(update={"dry_run": True}) if dry_run else roles.apply(store=store)
        )
        rec.counts = {
            "created": len(result.created),
            "grants": sum(len(g.objects or []) for r in result.roles for g in r.grants),
            "policies": len(result.policies),
        }
    if output is Output.table:
        message(("dry run: nothing changed; " if dry_run else "") + result.summary())
        return
    render(result if output is Output.json else result.grant_rows(), output)


class Section(StrEnum):
    locks = "locks"
    blocking = "blocking"
    long_running = "long-running"
    connections = "connections"
    table_sizes = "table-sizes"
    index_usage = "index-usage"
    cache_hit = "cache-hit"
    vacuum = "vacuum"
    all = "all"


@app.command("inspect")
def inspect_cmd(
    section: Annotated[
        Section,
        typer.Argument(
            metavar="[SECTION]",
            help="locks, blocking, long-running, connections, table-sizes, index-usage, "
            "cache-hit, vacuum, or all (every section, in that order).",
            show_default=True,
        ),
    ] = Section.all,
    min_duration: Annotated[
        str,
        typer.Option(help="long-running: queries (or idle transactions) at least this old."),
    ] = "1m",
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """Inspect a database under load: locks, blocking, long-running queries, connections,
    table sizes, index usage, cache hit ratio, vacuum (read-only).

    Each section is one dbops_inspect_* SQL function run in a read-only transaction, over
    DATABASE_URL or Supabase alike. Queries are cut to 200 characters with their literals
    masked. Nothing here cancels or terminates a backend (do that in SQL, by pid, after
    reading the blocking section).

    Example:
        dbops db inspect blocking
        dbops db inspect long-running --min-duration 5m -o json
        dbops db inspect all -o json | jq '.blocking'
    """
    from dbops.services import inspect

    min_seconds = parse_duration(min_duration, option="--min-duration", allow_zero=True)
    if section is not Section.all:
        rows = inspect.section(
            store=_deps.store(), name=section.value, min_duration_seconds=min_seconds
        )
        render(
            rows,
            output,
            columns=inspect.columns(section.value),
            title=section.value,
            empty=f"{section.value}: nothing to show",
        )
        return
    if output is Output.csv:
        raise UsageError("-o csv takes one section: name it, e.g. `dbops db inspect locks`")
    report = inspect.inspect_all(store=_deps.store(), min_duration_seconds=min_seconds)
    if output is Output.json:
        render(report, output)
    elif output is Output.jsonl:
        render(
            [
                {"section": name, **to_data(row)}
                for name, rows in report.by_section().items()
                for row in rows
            ],
            output,
        )
    else:
        for name, rows in report.by_section().items():
            render(
                rows,
                output,
                columns=inspect.columns(name),
                title=name,
                empty=f"{name}: nothing to show",
            )
