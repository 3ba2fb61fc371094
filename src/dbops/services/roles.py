"""Least-privilege database roles for scripts and CI (`dbops db roles`).

Two NOLOGIN roles, for LOGIN users to be members of:

- `dbops_readonly`: every read command (audit, list, show, stats, status, inspect...).
  EXECUTE on the `dbops_*` functions whose volatility is STABLE or IMMUTABLE (PostgreSQL
  refuses writes inside those), SELECT on the application tables and dbops' own tables,
  USAGE on schema public. Nothing that writes.
- `dbops_operator`: everything dbops does. EXECUTE on every `dbops_*` function, and the
  table privileges those functions need (they are SECURITY INVOKER: the caller needs them),
  plus USAGE on the sequences behind the tables it inserts into.

The grants are generated from the catalog when the SQL runs (one `do` block walks
pg_proc/pg_class), so the same text works pasted into the Supabase SQL editor and through
`--apply`, and stays right as migrations add functions. `dbops db migrate` re-runs the
grants part after applying migrations when the roles exist. Re-running is idempotent:
roles are created only when missing, grants are idempotent, and `dbops_readonly` loses any
EXECUTE on a function that has become VOLATILE and any write privilege on dbops' tables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from dbops.errors import ConfigError
from dbops.ports import SqlStore, Store

READONLY = "dbops_readonly"
OPERATOR = "dbops_operator"
ROLES = (READONLY, OPERATOR)

# The application tables dbops reads (architecture.md section 3).
APP_TABLES = ("jobs", "job_results", "worker_heartbeats", "queue_history", "rate_limit_requests")

# What dbops_operator may do per table: what dbops' SQL functions (src/dbops/sql/dbops/*.sql)
# read and write there. `select ... for update` and `insert ... on conflict do update` need
# UPDATE. A dbops table missing here gets SELECT only (tests/services/test_roles.py checks
# this map against the SQL and the installed tables).
OPERATOR_TABLE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    # application tables
    "jobs": ("SELECT", "UPDATE"),  # fail / requeue / recover change the status
    "job_results": ("SELECT",),
    "worker_heartbeats": ("SELECT", "DELETE"),  # workers forget (a dead worker's row)
    "queue_history": ("SELECT", "INSERT"),  # append-only event log
    "rate_limit_requests": ("SELECT", "INSERT", "DELETE"),  # the limiter; reset, cleanup
    # dbops' own tables
    "dbops_schema_migrations": ("SELECT",),  # written by `dbops db migrate` (the owner)
    "dbops_action_log": ("SELECT", "INSERT"),
    "dbops_job_recoveries": ("SELECT", "INSERT", "UPDATE"),
    "dbops_job_runs": ("SELECT", "INSERT", "UPDATE", "DELETE"),  # run leases; old runs pruned
    "dbops_dlq_monitor_state": ("SELECT", "INSERT", "UPDATE"),
    "dbops_rate_limit_rules": ("SELECT", "UPDATE"),
    "dbops_rate_limit_overrides": ("SELECT", "INSERT", "UPDATE"),
    "dbops_rate_limit_blocks": ("SELECT", "INSERT", "UPDATE"),
    "dbops_rate_limit_denials": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "dbops_audit_runs": ("SELECT", "INSERT", "DELETE"),
}

# Application tables with row-level security get this permissive policy for the two roles
# (their privileges still decide what each may do); dbops' own tables already admit them.
POLICY = "dbops_roles"

_PURPOSE = {
    READONLY: "read-only: audit, list, show, stats, status, inspect, metrics (CI, dashboards)",
    OPERATOR: "everything dbops does: recover, requeue, fail, rate-limit changes, audit save",
}


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def grants_query() -> str:
    """One row per grant (role_name, privileges, object_type, object_name), read from the
    catalog: object names are regclass/regprocedure text, quoted as SQL needs them."""
    managed = ",\n        ".join(
        f"('{table}', '{', '.join(privileges)}')"
        for table, privileges in OPERATOR_TABLE_PRIVILEGES.items()
    )
    return f"""
with managed(table_name, operator_privileges) as (
    values
        {managed}
), tables as (
    select c.oid, c.oid::regclass::text as object_name, c.relname::text as name,
           m.operator_privileges
    from pg_class c
    left join managed m on m.table_name = c.relname
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm')
      and (c.relname in ({_sql_list(APP_TABLES)})
           or c.relname like 'dbops\\_%'
           or coalesce(obj_description(c.oid, 'pg_class'), '') like 'dbops: created by dbops%')
), functions as (
    select p.oid::regprocedure::text as object_name, p.provolatile
    from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname like 'dbops\\_%'
      and p.prokind = 'f'
), sequences as (
    select distinct s.oid::regclass::text as object_name
    from tables t
    join pg_depend d on d.refclassid = 'pg_class'::regclass and d.refobjid = t.oid
                    and d.classid = 'pg_class'::regclass and d.deptype in ('a', 'i')
    join pg_class s on s.oid = d.objid and s.relkind = 'S'
    where t.operator_privileges like '%INSERT%'
), grants(role_name, privileges, object_type, object_name) as (
    select '{READONLY}', 'USAGE', 'schema', 'public'
    union all
    select '{READONLY}', 'SELECT', 'table', t.object_name from tables t
    union all
    select '{READONLY}', 'EXECUTE', 'function', f.object_name from functions f
    where f.provolatile in ('s', 'i')
    union all
    select '{OPERATOR}', 'USAGE', 'schema', 'public'
    union all
    select '{OPERATOR}', coalesce(t.operator_privileges, 'SELECT'), 'table', t.object_name
    from tables t
    union all
    select '{OPERATOR}', 'USAGE', 'sequence', s.object_name from sequences s
    union all
    select '{OPERATOR}', 'EXECUTE', 'function', f.object_name from functions f
)
select g.role_name, g.privileges, g.object_type, g.object_name from grants g
order by g.role_name desc, g.object_type, g.privileges, g.object_name
""".strip()


def _revokes_query() -> str:
    """What dbops_readonly must not hold: EXECUTE on VOLATILE dbops functions (a function
    re-declared VOLATILE by a later migration) and write privileges on the tables."""
    return f"""
select 'all' as privileges, 'function' as object_type, p.oid::regprocedure::text as object_name
from pg_proc p
where p.pronamespace = 'public'::regnamespace and p.proname like 'dbops\\_%'
  and p.prokind = 'f' and p.provolatile = 'v'
union all
select 'insert, update, delete, truncate, references, trigger', 'table', c.oid::regclass::text
from pg_class c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm')
  and (c.relname in ({_sql_list(APP_TABLES)}) or c.relname like 'dbops\\_%')
""".strip()


def _policy_tables_query() -> str:
    """Application tables whose row-level security would hide rows from the two roles."""
    return f"""
select c.oid::regclass::text as object_name
from pg_class c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
  and c.relname in ({_sql_list(APP_TABLES)}) and c.relrowsecurity
  and not exists (select 1 from pg_policy p where p.polrelid = c.oid
                  and p.polname in ('{POLICY}', 'dbops_not_api_roles'))
order by 1
""".strip()


_CREATE_ROLES = f"""
-- The two roles (NOLOGIN: LOGIN users become members of one of them). Roles are
-- cluster-wide: created only when missing.
do $$
declare
    r text;
begin
    foreach r in array array[{_sql_list(ROLES)}] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                execute format('create role %I nologin', r);
            exception when duplicate_object or unique_violation then
                null;  -- created meanwhile by a concurrent session
            end;
        end if;
    end loop;
end;
$$;
""".strip()


def grants_script() -> str:
    """The grants, the readonly revokes and the RLS policies, for the roles that exist
    (a no-op where they do not): `dbops db migrate` re-runs this after its migrations."""
    return f"""
-- Grants generated from the catalog: dbops_readonly gets EXECUTE on the STABLE/IMMUTABLE
-- dbops_* functions and SELECT on the tables; dbops_operator EXECUTE on every dbops_*
-- function and what those functions write. Idempotent.
do $$
declare
    v_grant record;
    v_table text;
begin
    for v_grant in
        select q.* from ({grants_query()}) q
        where exists (select 1 from pg_roles r where r.rolname = q.role_name)
    loop
        execute format('grant %s on %s %s to %I',
                       v_grant.privileges, v_grant.object_type, v_grant.object_name,
                       v_grant.role_name);
    end loop;
    if exists (select 1 from pg_roles where rolname = '{READONLY}') then
        for v_grant in {_revokes_query()}
        loop
            execute format('revoke %s on %s %s from {READONLY}',
                           v_grant.privileges, v_grant.object_type, v_grant.object_name);
        end loop;
    end if;
    -- Application tables with row-level security: admit the two roles (their privileges
    -- still decide what each may do), so the audit never counts rows it cannot see.
    if exists (select 1 from pg_roles where rolname = '{READONLY}')
       and exists (select 1 from pg_roles where rolname = '{OPERATOR}') then
        for v_table in {_policy_tables_query()}
        loop
            execute format('create policy {POLICY} on %s for all to {READONLY}, {OPERATOR} '
                           'using (true) with check (true)', v_table);
        end loop;
    end if;
end;
$$;
""".strip()


def script() -> str:
    """The whole SQL: create the roles when missing, then grant (for the SQL editor)."""
    return (
        "-- dbops roles: least-privilege roles for scripts and CI (`dbops db roles`).\n"
        "-- Paste into the Supabase SQL editor (or run `dbops db roles --apply`); re-running\n"
        "-- is safe. Then create a LOGIN user in one of them, for example:\n"
        f"--   create role ci_audit login password '...' in role {READONLY};\n\n"
        f"{_CREATE_ROLES}\n\n{grants_script()}\n"
    )


# --------------------------------------------------------------------------- models
class RoleGrant(BaseModel):
    """Privileges on objects of one type. `objects` is null when not read from a database
    (printing only): `rule` then says which objects the SQL picks from the catalog."""

    privileges: list[str]
    object_type: Literal["schema", "table", "sequence", "function"]
    objects: list[str] | None = None
    rule: str


class RolePlan(BaseModel):
    name: str
    login: bool = False
    purpose: str
    exists: bool | None = None  # null: not checked (printing only)
    grants: list[RoleGrant]


class RolesReport(BaseModel):
    """`dbops db roles -o json` (and `--apply -o json`).

    `roles`: each role with its grants; `sql`: the script (the same text is printed, pasted
    into the SQL editor, and run by `--apply`); `resolved`: grants list the objects this
    database's catalog gives (with `--apply`), else only the rules; `policies`: application
    tables with row-level security that get a `dbops_roles` policy admitting the two roles;
    `created`: roles this run created; `applied` / `dry_run`: what `--apply` did.
    """

    roles: list[RolePlan]
    policies: list[str] = Field(default_factory=list)
    sql: str
    resolved: bool = False
    applied: bool = False
    dry_run: bool = False
    created: list[str] = Field(default_factory=list)
    transport: str | None = None

    def grant_rows(self) -> list[dict[str, object]]:
        """One flat row per role and grant (for -o table/csv/md)."""
        return [
            {
                "role": role.name,
                "privileges": ", ".join(g.privileges),
                "on": g.object_type,
                "objects": len(g.objects) if g.objects is not None and self.resolved else None,
                "which": ", ".join(g.objects)
                if g.objects is not None and len(g.objects) <= 4
                else g.rule,
            }
            for role in self.roles
            for g in role.grants
        ]

    def summary(self) -> str:
        """One line: per role, its state and how many objects of each kind it gets."""
        parts = []
        for role in self.roles:
            state = {True: "exists", False: "to create", None: "not checked"}[role.exists]
            if self.applied:
                state = "created" if role.name in self.created else "up to date"
            kinds: dict[str, set[str]] = {}
            for g in role.grants:
                if g.object_type != "schema":
                    kinds.setdefault(g.object_type, set()).update(g.objects or [])
            counts = ", ".join(f"{len(names)} {kind}s" for kind, names in sorted(kinds.items()))
            parts.append(f"{role.name} ({state}): {counts}")
        if self.policies:
            parts.append(f"policy {POLICY} on {', '.join(self.policies)} (row-level security)")
        return "; ".join(parts)


def _schema_grant() -> RoleGrant:
    return RoleGrant(privileges=["USAGE"], object_type="schema", objects=["public"], rule="public")


def _rules() -> dict[str, list[RoleGrant]]:
    app = list(APP_TABLES)
    own_rule = "dbops' own tables (dbops_*, and those `dbops db migrate` created)"
    operator_tables: dict[tuple[str, ...], list[str]] = {}
    for table, privileges in OPERATOR_TABLE_PRIVILEGES.items():
        operator_tables.setdefault(privileges, []).append(table)
    return {
        READONLY: [
            RoleGrant(
                privileges=["USAGE"], object_type="schema", objects=["public"], rule="public"
            ),
            RoleGrant(
                privileges=["SELECT"],
                object_type="table",
                rule=f"the application tables ({', '.join(app)}) and {own_rule}",
            ),
            RoleGrant(
                privileges=["EXECUTE"],
                object_type="function",
                rule="every dbops_* function in public whose volatility is STABLE or "
                "IMMUTABLE (pg_proc.provolatile in ('s', 'i'))",
            ),
        ],
        OPERATOR: [
            RoleGrant(
                privileges=["USAGE"], object_type="schema", objects=["public"], rule="public"
            ),
            *[
                RoleGrant(
                    privileges=list(privileges),
                    object_type="table",
                    objects=sorted(tables),
                    rule="where present; what dbops' functions read and write there",
                )
                for privileges, tables in sorted(operator_tables.items())
            ],
            RoleGrant(
                privileges=["SELECT"],
                object_type="table",
                rule=f"any other of {own_rule}",
            ),
            RoleGrant(
                privileges=["USAGE"],
                object_type="sequence",
                rule="the sequences behind the tables it inserts into (serial/identity ids)",
            ),
            RoleGrant(
                privileges=["EXECUTE"], object_type="function", rule="every dbops_* function"
            ),
        ],
    }


def plan() -> RolesReport:
    """What `dbops db roles` prints: the rules and the SQL (no database needed)."""
    rules = _rules()
    return RolesReport(
        roles=[RolePlan(name=r, purpose=_PURPOSE[r], grants=rules[r]) for r in ROLES],
        sql=script(),
    )


def _sql_store(store: Store) -> SqlStore:
    if not hasattr(store, "execute_script") or not hasattr(store, "query"):
        raise ConfigError(
            "creating roles needs a direct Postgres connection (DATABASE_URL)",
            hint="on Supabase, run `dbops db roles` and paste the SQL into the SQL editor",
        )
    return store  # type: ignore[return-value]


def _query(store: SqlStore, text: str) -> list[dict[str, object]]:
    """Run catalog SQL that is also embedded in the script: store.query binds parameters,
    so a literal `%` (LIKE patterns) is written `%%` there."""
    return store.query(text.replace("%", "%%"), {})


def _existing(store: SqlStore) -> set[str]:
    rows = store.query(
        "select rolname::text as name from pg_roles "
        "where rolname = any(string_to_array(%(names)s, ','))",
        {"names": ",".join(ROLES)},
    )
    return {str(r["name"]) for r in rows}


def resolve(*, store: Store) -> RolesReport:
    """The grants this database's catalog gives today (read-only): the preview of --apply."""
    sql_store = _sql_store(store)
    rows = _query(sql_store, grants_query())
    existing = _existing(sql_store)
    policies = [str(r["object_name"]) for r in _query(sql_store, _policy_tables_query())]
    roles = []
    for name in ROLES:
        grouped: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            if row["role_name"] == name:
                key = (str(row["object_type"]), str(row["privileges"]))
                grouped.setdefault(key, []).append(str(row["object_name"]))
        rules: dict[tuple[str, str], str] = {
            (g.object_type, ", ".join(g.privileges)): g.rule for g in _rules()[name]
        }
        grants = [
            RoleGrant(
                privileges=privileges.split(", "),
                object_type=object_type,
                objects=objects,
                rule=rules.get((object_type, privileges), "what dbops' functions need there"),
            )
            for (object_type, privileges), objects in grouped.items()
        ]
        roles.append(
            RolePlan(name=name, purpose=_PURPOSE[name], exists=name in existing, grants=grants)
        )
    return RolesReport(
        roles=roles,
        policies=policies,
        sql=script(),
        resolved=True,
        transport=store.transport,
    )


def apply(*, store: Store) -> RolesReport:
    """Create the roles when missing and grant (one transaction); idempotent. Its dry run
    is the plan `resolve` returns (`dry_run` set by the command)."""
    sql_store = _sql_store(store)
    before = resolve(store=store)
    sql_store.execute_script(script())
    after = resolve(store=store)
    after.applied = True
    after.policies = before.policies  # created by this run (none are left to create now)
    after.created = [r.name for r in before.roles if not r.exists]
    return after
