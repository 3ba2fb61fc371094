"""Reusable per-test databases: clone a template once, reset it between tests.

Creating a database from a template copies it through the WAL (about half a second per
test on a 2-core machine); most tests only change rows. So a database goes back to a pool
after its test, and the next test gets it after a reset: every other session on it is
ended, every table is truncated and the template's rows and sequence positions are put
back, and statistics counters are reset. A test that changed anything else (a function, a
table, a grant, an index, a database setting: the catalog fingerprint below differs from
the template's) gets its database dropped instead, exactly as before pooling.

Pooling needs a superuser (to restore rows with triggers and foreign keys off); on a
server where the test user is not one, each test gets a new database as before.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

USER_SCHEMAS = "n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema'"

# Everything a test could change besides rows and sequence positions, in one text.
FINGERPRINT = f"""
select md5(coalesce(string_agg(x, E'\\n' order by x), '')) from (
  select 'n ' || n.nspname || ' ' || coalesce(n.nspacl::text, '') as x
    from pg_namespace n where {USER_SCHEMAS}
  union all
  select 'c ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' '
         || c.relpersistence::text
         || ' ' || coalesce(c.relacl::text, '') || ' ' || coalesce(c.reloptions::text, '')
         || ' ' || c.relrowsecurity::text || c.relforcerowsecurity::text || ' '
         || c.relreplident::text
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where {USER_SCHEMAS}
  union all
  select 'a ' || n.nspname || '.' || c.relname || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text
         || a.attisdropped::text
         || ' ' || a.attidentity::text || a.attgenerated::text || ' '
         || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(a.attacl::text, '')
    from pg_attribute a join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
   where a.attnum > 0 and {USER_SCHEMAS}
  union all
  select 'p ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
         || ') ' || md5(p.prosrc) || ' ' || coalesce(p.proacl::text, '') || ' '
         || coalesce(p.proconfig::text, '') || ' ' || p.provolatile::text || p.prosecdef::text
         || ' ' || pg_get_userbyid(p.proowner)
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace where {USER_SCHEMAS}
  union all
  select 'i ' || i.indexrelid::regclass::text || ' ' || i.indisvalid::text || i.indisready::text
         || ' ' || md5(pg_get_indexdef(i.indexrelid))
    from pg_index i join pg_class c on c.oid = i.indexrelid
    join pg_namespace n on n.oid = c.relnamespace where {USER_SCHEMAS}
  union all
  select 'k ' || conrelid::regclass::text || ' ' || conname || ' ' || convalidated::text || ' '
         || md5(pg_get_constraintdef(co.oid))
    from pg_constraint co join pg_namespace n on n.oid = co.connamespace where {USER_SCHEMAS}
  union all
  select 't ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text
    from pg_trigger where not tgisinternal
  union all
  select 'r ' || polrelid::regclass::text || ' ' || polname || ' '
         || coalesce(pg_get_expr(polqual, polrelid), '') || ' '
         || coalesce(pg_get_expr(polwithcheck, polrelid), '') || ' ' || polroles::text
    from pg_policy
  union all
  select 'y ' || n.nspname || '.' || t.typname || ' ' || coalesce(t.typacl::text, '')
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
   where {USER_SCHEMAS} and t.typtype in ('e', 'd', 'c', 'r')
  union all
  select 'e ' || enumtypid::regtype::text || ' ' || enumlabel || ' ' || enumsortorder from pg_enum
  union all
  select 'v ' || c.oid::regclass::text || ' ' || md5(pg_get_viewdef(c.oid))
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind::text in ('v', 'm') and {USER_SCHEMAS}
  union all
  select 'w ' || rulename || ' ' || ev_class::regclass::text from pg_rewrite
   where ev_class in (select c.oid from pg_class c join pg_namespace n
                       on n.oid = c.relnamespace where {USER_SCHEMAS})
     and rulename <> '_RETURN'
  union all
  select 'x ' || extname || ' ' || extversion from pg_extension
  union all
  select 'g ' || coalesce(setconfig::text, '') || ' ' || setrole from pg_db_role_setting
   where setdatabase = (select oid from pg_database where datname = current_database())
  union all
  select 'd ' || coalesce(datacl::text, '') || ' ' || datallowconn::text || ' ' || datconnlimit
    from pg_database where datname = current_database()
  union all
  select 'q ' || count(*) from pg_prepared_xacts where database = current_database()
  union all
  select 'o ' || count(*) from pg_largeobject_metadata
  union all
  select 'u ' || evtname || ' ' || evtenabled::text from pg_event_trigger
  union all
  select 'b ' || pubname from pg_publication
) parts
"""

# A cheap stand-in for FINGERPRINT: which catalog row versions exist. Any DDL, grant or
# database setting writes new row versions, so an unchanged stamp means an unchanged
# catalog; a changed one (a truncate also writes one) sends the reset to FINGERPRINT.
# In a new session FINGERPRINT costs about 18 ms of server CPU (it deparses every
# function, index and constraint), this about 5 ms; there are about 1,200 resets per run.
_STAMPED = (
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_proc",
    "pg_index",
    "pg_constraint",
    "pg_trigger",
    "pg_policy",
    "pg_type",
    "pg_enum",
    "pg_rewrite",
    "pg_extension",
    "pg_largeobject_metadata",
    "pg_event_trigger",
    "pg_publication",
)
STAMP = (
    "select concat_ws(' ', "
    + ", ".join(
        f"(select count(*) || ':' || coalesce(sum(hashtext(xmin::text || ctid::text)), 0)"
        f" from {catalog})"
        for catalog in _STAMPED
    )
    + """,
  (select xmin::text || ctid::text from pg_database where datname = current_database()),
  (select count(*) || ':' || coalesce(sum(hashtext(xmin::text || ctid::text)), 0)
     from pg_db_role_setting
    where setdatabase = (select oid from pg_database where datname = current_database())),
  (select count(*) from pg_prepared_xacts where database = current_database()))"""
)

TABLES = f"""
select format('%I.%I', n.nspname, c.relname)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind::text = 'r' and {USER_SCHEMAS}
 order by 1
"""

SEQUENCES = f"""
select format('%I.%I', n.nspname, c.relname)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind::text = 'S' and {USER_SCHEMAS}
 order by 1
"""


def with_db(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


@dataclass
class TemplateState:
    """What a fresh clone of one template holds: catalog fingerprint, rows, sequences."""

    fingerprint: str
    tables: list[str]
    rows: dict[str, bytes]
    sequences: list[tuple[str, int, bool]]
    row_digests: dict[str, str] = field(default_factory=dict)


@dataclass
class DatabasePool:
    server_url: str
    prefix: str = "dbops_t"
    free: dict[str | None, list[str]] = field(default_factory=dict)
    states: dict[str | None, TemplateState] = field(default_factory=dict)
    owner: dict[str, str | None] = field(default_factory=dict)
    # Per database: the catalog STAMP its last reset left, when that reset proved it equal
    # to its template's.
    stamps: dict[str, str] = field(default_factory=dict)
    created: int = 0
    reused: int = 0
    _admin_conn: psycopg.Connection[Any] | None = None

    def __post_init__(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            row = conn.execute("select rolsuper from pg_roles where rolname = current_user")
            self.enabled = bool(row.fetchone()[0])  # type: ignore[index]

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.server_url, autocommit=True)

    def _end_sessions(self, name: str) -> None:
        """End every other session on `name` (one admin connection, kept open)."""
        statement = (
            "select pg_terminate_backend(pid, 10000) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()"
        )
        for attempt in range(2):
            if self._admin_conn is None or self._admin_conn.closed:
                self._admin_conn = self._admin()
            try:
                self._admin_conn.execute(statement, [name])
                return
            except psycopg.OperationalError:
                self._admin_conn = None
                if attempt:
                    raise

    def acquire(self, template: str | None) -> str:
        """A database name: a fresh clone of `template` (None: an empty database)."""
        free = self.free.setdefault(template, [])
        if free:
            self.reused += 1
            return free.pop()
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            statement = sql.SQL("create database {}").format(sql.Identifier(name))
            if template is not None:
                statement += sql.SQL(" template {}").format(sql.Identifier(template))
            conn.execute(statement)
        self.created += 1
        self.owner[name] = template
        if self.enabled and template not in self.states:
            with psycopg.connect(with_db(self.server_url, name), autocommit=True) as conn:
                self.states[template] = self._capture(conn)
        return name

    def release(self, name: str) -> None:
        """Reset `name` for the next test, or drop it when the test changed its schema."""
        template = self.owner[name]
        if self.enabled and self._reset(name, self.states[template]):
            self.free.setdefault(template, []).append(name)
        else:
            self.drop(name)

    def drop(self, name: str) -> None:
        self.owner.pop(name, None)
        self.stamps.pop(name, None)
        with self._admin() as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        for names in self.free.values():
            for name in names:
                self.drop(name)
        self.free.clear()
        if self._admin_conn is not None:
            self._admin_conn.close()
            self._admin_conn = None

    @staticmethod
    def _capture(conn: psycopg.Connection[Any]) -> TemplateState:
        fingerprint = conn.execute(FINGERPRINT).fetchone()[0]  # type: ignore[index]
        tables = [r[0] for r in conn.execute(TABLES).fetchall()]
        rows: dict[str, bytes] = {}
        for table in tables:
            data = bytearray()
            with conn.cursor().copy(f"copy {table} to stdout (format binary)") as copy:
                for chunk in copy:
                    data += chunk
            has_rows = conn.execute(f"select exists (select from {table})").fetchone()
            if has_rows and has_rows[0]:
                rows[table] = bytes(data)
        sequences = []
        for (seq,) in conn.execute(SEQUENCES).fetchall():
            last, called = conn.execute(f"select last_value, is_called from {seq}").fetchone()  # type: ignore[misc]
            sequences.append((seq, int(last), bool(called)))
        digests = dict(zip(rows, DatabasePool._probe(conn, list(rows), set(rows)), strict=True))
        return TemplateState(fingerprint, tables, rows, sequences, digests)

    @staticmethod
    def _probe(
        conn: psycopg.Connection[Any], tables: list[str], digested: set[str]
    ) -> tuple[Any, ...]:
        """One round trip: per table, a digest of its rows (tables in `digested`, those the
        template fills) or whether it holds any row (the others)."""
        if not tables:
            return ()
        parts = [
            f"(select md5(coalesce(string_agg(t::text, E'\\n' order by t::text), ''))"
            f" from {table} t)"
            if table in digested
            else f"exists (select from {table})"
            for table in tables
        ]
        return tuple(conn.execute(f"select {', '.join(parts)}").fetchone() or ())

    @staticmethod
    def _dirty_tables(conn: psycopg.Connection[Any], state: TemplateState) -> list[str]:
        probed = DatabasePool._probe(conn, state.tables, set(state.row_digests))
        return [
            table
            for table, seen in zip(state.tables, probed, strict=True)
            if (seen != state.row_digests[table] if table in state.row_digests else seen)
        ]

    def _reset(self, name: str, state: TemplateState) -> bool:
        self._end_sessions(name)
        try:
            conn = psycopg.connect(with_db(self.server_url, name), autocommit=True)
        except psycopg.OperationalError:
            return False
        with conn:
            stamp = conn.execute(STAMP).fetchone()[0]  # type: ignore[index]
            if stamp != self.stamps.get(name):
                current = conn.execute(FINGERPRINT).fetchone()[0]  # type: ignore[index]
                if current != state.fingerprint:
                    return False
            with conn.transaction():
                conn.execute("set local session_replication_role = replica")
                conn.execute("set local lock_timeout = '10s'")
                # Only tables holding rows (or the template's rows) are truncated: a
                # truncate swaps every file of the table and its indexes, and most tests
                # write to two or three of the fifteen tables.
                dirty = self._dirty_tables(conn, state)
                if dirty:
                    conn.execute(f"truncate {', '.join(dirty)} restart identity cascade")
                for table, data in state.rows.items():
                    if table not in dirty:
                        continue
                    with conn.cursor().copy(f"copy {table} from stdin (format binary)") as copy:
                        copy.write(data)
                if state.sequences:
                    conn.execute(
                        "select "
                        + ", ".join("setval(%s::regclass, %s, %s)" for _ in state.sequences),
                        [value for sequence in state.sequences for value in sequence],
                    )
            conn.execute("select pg_stat_reset()")
            self.stamps[name] = conn.execute(STAMP).fetchone()[0]  # type: ignore[index]
        return True
