"""Versioned, idempotent migrations recorded in `dbops_schema_migrations`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from importlib import resources
from typing import Literal

from pydantic import BaseModel, Field

from dbops.errors import ConfigError, DbopsError, PermissionDeniedError
from dbops.ports import SqlStore, Store
from dbops.services import roles

MigrationSet = Literal["dbops", "app", "app_legacy"]
NO_TRANSACTION = "-- dbops:no-transaction"

BOOTSTRAP = """
create table if not exists dbops_schema_migrations (
    version text primary key,
    checksum text not null,
    applied_at timestamptz not null default now()
);
"""

# Every dbops_* object is reachable by the service role and operator roles only
# (architecture.md section 1). Supabase grants new objects in public to `anon` and
# `authenticated` by default, which would expose them through PostgREST with the public
# key: revoke those, and turn on RLS with a policy that admits every role but those two, so
# the tables stay closed to the API even if a grant slips back, while a non-owner operator
# role still works. This block runs inside the transaction of every migration step (not
# once at the end), so an interrupted migrate never leaves an object open to those roles.
PROTECT = """
do $$
declare
    api text;
    fns text;
    tbls text;
    tbl regclass;
    has_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    -- One REVOKE and one GRANT for all the objects (not one per object and role: this block
    -- runs once per migration step, and per object it cost most of a step's time).
    select concat_ws(', ', 'public', string_agg(quote_ident(rolname), ', ' order by rolname))
      into api from pg_roles where rolname in ('anon', 'authenticated');
    -- Functions already closed (an ACL without PUBLIC, anon or authenticated, and, where
    -- service_role exists, its EXECUTE from the owner) are left out: both statements would
    -- leave their ACL as it is, and a migration step re-declares only a few.
    select string_agg(p.oid::regprocedure::text, ', ' order by p.oid) into fns
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public' and p.proname like 'dbops\\_%'
       and (p.proacl is null
            or exists (select 1 from aclexplode(p.proacl) a
                       where a.grantee = 0 or pg_get_userbyid(a.grantee)
                                              in ('anon', 'authenticated'))
            or (has_service and not exists (
                    select 1 from aclexplode(p.proacl) a
                    where pg_get_userbyid(a.grantee) = 'service_role'
                      and a.grantor = p.proowner and a.privilege_type = 'EXECUTE')));
    if fns is not null then
        execute format('revoke all on function %s from %s', fns, api);
        if has_service then
            execute format('grant execute on function %s to service_role', fns);
        end if;
    end if;
    select string_agg(c.oid::regclass::text, ', ' order by c.oid) into tbls
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind in ('r', 'S', 'v')
       and (c.relname like 'dbops\\_%'
            or obj_description(c.oid, 'pg_class') like 'dbops: created by dbops%');
    if tbls is not null then
        execute format('revoke all on %s from %s', tbls, api);
        if has_service then
            execute format('grant all on %s to service_role', tbls);
        end if;
    end if;
    for tbl in
        select c.oid::regclass from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'r'
          and (c.relname like 'dbops\\_%'
               or obj_description(c.oid, 'pg_class') like 'dbops: created by dbops%')
    loop
        if not (select relrowsecurity from pg_class where oid = tbl) then
            execute format('alter table %s enable row level security', tbl);
        end if;
        -- Any operator role may use the table; Supabase's public API roles may not.
        if not exists (select 1 from pg_policy where polrelid = tbl
                       and polname = 'dbops_not_api_roles') then
            execute format(
                'create policy dbops_not_api_roles on %s for all to public '
                'using (current_user not in (''anon'', ''authenticated'')) '
                'with check (current_user not in (''anon'', ''authenticated''))', tbl);
        end if;
    end loop;
end;
$$;
"""
# Kept for callers of the previous name.
FINALIZE = PROTECT

# Index builds on the application's (possibly big) tables: never cut by the connection's
# statement timeout, never queued for long behind a lock (that would block writers).
INDEX_SESSION = "set statement_timeout = 0;\nset lock_timeout = '10s';\n"
INDEX_SESSION_RESET = "reset statement_timeout;\nreset lock_timeout;\n"
_CONCURRENT_INDEX = re.compile(
    r"create\s+index\s+concurrently\s+if\s+not\s+exists\s+([a-z0-9_]+)", re.IGNORECASE
)
Checkpoint = Callable[[str], None]


class Migration(BaseModel):
    version: str
    name: str
    checksum: str
    transactional: bool
    sql: str


class MigrationState(BaseModel):
    """One row of `dbops db status`."""

    version: str
    name: str
    status: Literal["applied", "pending", "changed"]
    applied_at: str | None = None


class MigrateResult(BaseModel):
    """`dbops db migrate -o json`."""

    applied: list[str]
    already_applied: int
    dry_run: bool
    transport: str
    rebuilt_indexes: list[str] = Field(default_factory=list)


# The application schema's two variants share one template (sql/app/): `app` renders it as
# the standard variant, `app_legacy` as the legacy one (render_variant).
_APP_VARIANTS: dict[str, str] = {"app": "standard", "app_legacy": "legacy"}
_ONLY = re.compile(r"^-- dbops:only (standard|legacy)$")
_END = "-- dbops:end"


def render_variant(template: str, variant: str) -> str:
    """The template's text for one schema variant: lines between `-- dbops:only VARIANT`
    and `-- dbops:end` are kept for that variant only (the markers dropped); other lines
    for both."""
    lines: list[str] = []
    only: str | None = None
    for line in template.splitlines(keepends=True):
        marker = _ONLY.match(line.rstrip("\n"))
        if marker:
            if only is not None:
                raise ValueError(f"nested `{line.strip()}` in the app schema template")
            only = marker.group(1)
        elif line.rstrip("\n") == _END:
            if only is None:
                raise ValueError("`-- dbops:end` without `-- dbops:only` in the app schema")
            only = None
        elif only is None or only == variant:
            lines.append(line)
    if only is not None:
        raise ValueError("`-- dbops:only` without `-- dbops:end` in the app schema template")
    return "".join(lines)


def load_migrations(which: MigrationSet = "dbops") -> list[Migration]:
    variant = _APP_VARIANTS.get(which)
    folder = resources.files("dbops.sql").joinpath("app" if variant else which)
    migrations = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", entry.name):
            continue
        text = entry.read_text()
        if variant:
            text = render_variant(text, variant)
        migrations.append(
            Migration(
                version=f"{which}/{entry.name[:4]}" if which != "dbops" else entry.name[:4],
                name=entry.name[5:-4],
                checksum=hashlib.sha256(text.encode()).hexdigest()[:16],
                transactional=NO_TRANSACTION not in text,
                sql=text,
            )
        )
    return migrations


def applied_versions(store: Store) -> dict[str, dict[str, str]]:
    """version -> {checksum, applied_at}; empty when dbops was never installed."""
    try:
        rows = store.call("dbops_migrations_applied")
    except PermissionDeniedError:
        raise  # installed, but this role may not read it: never "everything is pending"
    except ConfigError:
        return {}
    return {
        str(r["version"]): {"checksum": str(r["checksum"]), "applied_at": str(r["applied_at"])}
        for r in rows
    }


def status(*, store: Store, which: MigrationSet = "dbops") -> list[MigrationState]:
    applied = applied_versions(store)
    states = []
    for m in load_migrations(which):
        done = applied.get(m.version)
        if done is None:
            state: Literal["applied", "pending", "changed"] = "pending"
        elif done["checksum"] != m.checksum:
            state = "changed"
        else:
            state = "applied"
        states.append(
            MigrationState(
                version=m.version,
                name=m.name,
                status=state,
                applied_at=done["applied_at"] if done else None,
            )
        )
    return states


def pending(*, store: Store, which: MigrationSet = "dbops") -> list[Migration]:
    """What `migrate` would apply: migrations never applied, those whose file changed
    since (re-applied: every migration is idempotent by convention), and index migrations
    whose index an interrupted build left INVALID."""
    return _plan(store, which)[0]


def _plan(store: Store, which: MigrationSet) -> tuple[list[Migration], list[str], int]:
    applied = applied_versions(store)
    known = load_migrations(which)
    todo = [
        m for m in known if m.version not in applied or applied[m.version]["checksum"] != m.checksum
    ]
    invalid: list[str] = []
    if hasattr(store, "query"):
        names = [n for m in known if not m.transactional for n in _CONCURRENT_INDEX.findall(m.sql)]
        invalid = _invalid_indexes(store, names)  # type: ignore[arg-type]
        for m in known:
            if (
                m not in todo
                and not m.transactional
                and set(_CONCURRENT_INDEX.findall(m.sql)) & set(invalid)
            ):
                todo.append(m)
    return sorted(todo, key=lambda m: m.version), invalid, len(applied)


def _record(m: Migration) -> str:
    return (
        "insert into dbops_schema_migrations (version, checksum) values "
        f"('{m.version}', '{m.checksum}') on conflict (version) do update "
        "set checksum = excluded.checksum, applied_at = now();\n"
    )


# --------------------------------------------------------------------------- db check
class SchemaColumn(BaseModel):
    """One row of `dbops db check`: an application table (column null) or column."""

    table: str
    column: str | None = None
    expected: str
    found: str
    ok: bool
    note: str | None = None


class SchemaCheck(BaseModel):
    """`dbops db check -o json`: can dbops work with this application schema?

    `status_values` are the values the jobs status check constraint allows (null when the
    column is unconstrained); dbops only ever writes `pending` and `failed`.
    """

    compatible: bool
    columns: list[SchemaColumn]
    status_values: list[str] | None = None
    summary: str


def check_script(schema: Literal["public", "pg_temp"]) -> str:
    text = resources.files("dbops.sql").joinpath("check.sql").read_text()
    return text.replace("@schema@", schema)


def _summary(columns: list[SchemaColumn]) -> str:
    bad = [c for c in columns if not c.ok]
    if not bad:
        return "compatible: every table and column it needs is usable"
    if any(c.table == "jobs" and c.column is None for c in bad):
        return "this database has no jobs table (is DATABASE_URL right?)"
    names = []
    for c in bad:
        where = c.table if c.column is None else f"{c.table}.{c.column}"
        names.append(f"{where} ({c.note or c.found})")
    return f"incompatible application schema: {'; '.join(names)}"


def check(*, store: Store) -> SchemaCheck:
    """Compare the application schema with what dbops reads and writes. Changes nothing."""
    if hasattr(store, "probe"):
        # Direct Postgres: works before dbops is installed (temporary functions, rolled back).
        rows, values = store.probe(
            check_script("pg_temp"),
            [
                "select * from pg_temp.dbops_app_check()",
                "select * from pg_temp.dbops_app_status_values()",
            ],
        )
    else:
        rows = store.call("dbops_app_check")
        values = store.call("dbops_app_status_values")
    columns = [
        SchemaColumn(
            table=str(r["table_name"]),
            column=r["column_name"],
            expected=str(r["expected"]),
            found=str(r["found"]),
            ok=bool(r["ok"]),
            note=r["note"],
        )
        for r in rows
    ]
    status_values = values[0]["status_values"] if values else None
    return SchemaCheck(
        compatible=all(c.ok for c in columns),
        columns=columns,
        status_values=list(status_values) if status_values is not None else None,
        summary=_summary(columns),
    )


def require_compatible(*, store: Store) -> SchemaCheck:
    report = check(store=store)
    if not report.compatible:
        raise ConfigError(report.summary, hint="`dbops db check` lists what dbops expects")
    return report


# --------------------------------------------------------------------------- migrate
def _invalid_indexes(store: SqlStore, names: list[str]) -> list[str]:
    if not names:
        return []
    rows = store.query(
        "select c.relname::text as name from pg_index i join pg_class c on c.oid = i.indexrelid "
        "where not i.indisvalid and c.relnamespace = 'public'::regnamespace "
        "and c.relname = any(string_to_array(%(names)s, ','))",
        {"names": ",".join(names)},
    )
    return [str(r["name"]) for r in rows]


def plan(*, store: Store, which: MigrationSet = "dbops") -> MigrateResult:
    """What `migrate` would apply (its dry run): the pending and changed migrations, after
    the same checks (a direct connection; for dbops' own set, the application schema)."""
    _sql_store(store)
    if which == "dbops":
        require_compatible(store=store)
    todo, invalid, already_applied = _plan(store, which)
    return MigrateResult(
        applied=[f"{m.version}_{m.name}" for m in todo],
        already_applied=already_applied,
        dry_run=True,
        transport=store.transport,
        rebuilt_indexes=invalid,
    )


def _sql_store(store: Store) -> SqlStore:
    if not hasattr(store, "execute_script"):
        raise ConfigError(
            "migrations need a direct Postgres connection (DATABASE_URL)",
            hint="on Supabase, run `dbops db migrate --print` and paste it into the SQL editor",
        )
    return store  # type: ignore[return-value]


def migrate(
    *,
    store: Store,
    which: MigrationSet = "dbops",
    checkpoint: Checkpoint | None = None,
) -> MigrateResult:
    """Apply pending (and changed) migrations.

    dbops' own set first checks the application schema and refuses (exit 3) before
    changing anything. Each step is one transaction that also protects what it created
    (PROTECT), so a failure at any point leaves nothing open to Supabase's API roles; index
    builds run CONCURRENTLY without a statement timeout, and an index an interrupted build
    left INVALID is dropped and built again.
    """
    sql_store = _sql_store(store)
    step = checkpoint or (lambda _name: None)
    if which == "dbops":
        require_compatible(store=store)
    todo, invalid, already_applied = _plan(store, which)
    step("bootstrap")
    sql_store.execute_script(BOOTSTRAP + PROTECT)
    if which == "dbops":
        step("check")
        sql_store.execute_script(check_script("public") + PROTECT)
    for m in todo:
        step(m.version)
        try:
            if m.transactional:
                sql_store.execute_script(m.sql + "\n" + _record(m) + PROTECT)
            else:
                for name in _CONCURRENT_INDEX.findall(m.sql):
                    if name in invalid:
                        sql_store.execute_script(
                            f"drop index concurrently if exists public.{name};",
                            transactional=False,
                        )
                sql_store.execute_script(
                    INDEX_SESSION + m.sql + "\n" + INDEX_SESSION_RESET, transactional=False
                )
                sql_store.execute_script(_record(m))
        except DbopsError as exc:
            raise type(exc)(f"migration {m.version}_{m.name} failed: {exc.message}") from None
    if which == "dbops":
        # Keep `dbops db roles` grants in step with new or re-declared functions (a
        # no-op unless the roles exist).
        sql_store.execute_script(roles.grants_script())
    step("done")
    return MigrateResult(
        applied=[f"{m.version}_{m.name}" for m in todo],
        already_applied=already_applied,
        dry_run=False,
        transport=store.transport,
        rebuilt_indexes=invalid,
    )


# Stops the SQL editor's single transaction before anything is created.
_REFUSE_INCOMPATIBLE = """
do $$
declare
    v text;
begin
    select string_agg(coalesce(c.table_name || '.' || c.column_name, c.table_name)
                      || ' (' || coalesce(c.note, c.found) || ')', '; ')
      into v from dbops_app_check() c where not c.ok;
    if v is not null then
        raise exception 'dbops: incompatible application schema: %', v;
    end if;
end;
$$;
"""


def render_script(which: MigrationSet = "dbops") -> str:
    """All migrations as one script for the Supabase SQL editor (re-runnable)."""
    parts = [
        "-- dbops migrations: paste into the Supabase SQL editor and run.",
        "-- Every statement is idempotent; re-running is safe.",
        BOOTSTRAP.strip(),
        PROTECT.strip(),
    ]
    if which == "dbops":
        parts += [check_script("public").strip(), PROTECT.strip(), _REFUSE_INCOMPATIBLE.strip()]
    for m in load_migrations(which):
        body = m.sql
        if not m.transactional:
            # The SQL editor runs one transaction, where CONCURRENTLY is not allowed.
            body = body.replace("concurrently ", "").replace("CONCURRENTLY ", "")
        parts.append(
            f"-- migration {m.version}_{m.name}\n{body.strip()}\n{_record(m).strip()}\n"
            + PROTECT.strip()
        )
    if which == "dbops":
        parts.append(
            "-- `dbops db roles` grants (a no-op unless the roles exist)\n" + roles.grants_script()
        )
    return "\n\n".join(parts) + "\n"
