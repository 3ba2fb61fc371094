-- `dbops db inspect` (docs/inspect.md): one function per
-- section, reading the catalog and statistics views only. Each is STABLE (Postgres refuses a
-- write inside it, and `dbops db roles` gives dbops_readonly EXECUTE on it) and first makes
-- its transaction read-only (SET LOCAL transaction_read_only), over direct Postgres and over
-- PostgREST alike. They read pg_catalog only (always searched first), so they set no
-- search_path.
-- Nothing here cancels or terminates a backend. Queries are returned cut to 2,000 characters;
-- dbops masks their literals before showing them (dbops.services.redact.mask_sql).
-- Other roles' queries read `<insufficient privilege>` unless the caller has
-- pg_read_all_stats (Supabase's postgres and service roles have it).

-- Locks held or awaited by other sessions (virtual transaction ids left out: every
-- transaction holds its own).
create or replace function dbops_inspect_locks()
returns table (
    pid int, locktype text, mode text, granted boolean, relation text, state text,
    wait_event text, query_age_seconds int, query text
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select l.pid, l.locktype, l.mode, l.granted,
           case when l.relation is not null then l.relation::regclass::text end,
           a.state, nullif(concat_ws(':', a.wait_event_type, a.wait_event), ''),
           floor(extract(epoch from now() - a.query_start))::int, left(a.query, 2000)
    from pg_locks l
    left join pg_stat_activity a on a.pid = l.pid
    where l.pid is distinct from pg_backend_pid() and l.locktype <> 'virtualxid'
      and (l.database is null
           or l.database = (select d.oid from pg_database d where d.datname = current_database()))
    order by l.granted, a.query_start nulls last, l.pid, l.locktype, l.mode;
$$;

-- Who waits on whom: one row per (blocked, blocking) pair from pg_blocking_pids().
create or replace function dbops_inspect_blocking()
returns table (
    blocked_pid int, blocked_query text, wait_seconds int, wait_event text, blocking_pid int,
    blocking_state text, blocking_query text, blocking_xact_age_seconds int
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select w.pid, left(w.query, 2000),
           floor(extract(epoch from now() - coalesce(w.state_change, w.query_start)))::int,
           nullif(concat_ws(':', w.wait_event_type, w.wait_event), ''),
           b.pid, b.state, left(b.query, 2000),
           floor(extract(epoch from now() - b.xact_start))::int
    from pg_stat_activity w
    cross join lateral unnest(pg_blocking_pids(w.pid)) as bp(pid)
    left join pg_stat_activity b on b.pid = bp.pid
    where w.pid <> pg_backend_pid()
    order by 3 desc nulls last, w.pid, b.pid;
$$;

-- Queries (and transactions idle in the middle) running for at least p_min_seconds.
create or replace function dbops_inspect_long_running(p_min_seconds int)
returns table (
    pid int, role text, application text, state text, duration_seconds int,
    xact_age_seconds int, wait_event text, query text
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select x.pid, x.usename::text, x.application_name, x.state, x.duration, x.xact_age,
           nullif(concat_ws(':', x.wait_event_type, x.wait_event), ''), left(x.query, 2000)
    from (
        select a.*,
               floor(extract(epoch from now() - case when a.state like 'idle in transaction%'
                                                     then a.xact_start
                                                     else a.query_start end))::int as duration,
               floor(extract(epoch from now() - a.xact_start))::int as xact_age
        from pg_stat_activity a
        where a.pid <> pg_backend_pid() and a.backend_type = 'client backend'
          and (a.state = 'active' or a.state like 'idle in transaction%')
    ) x
    where x.duration >= greatest(coalesce(p_min_seconds, 0), 0)
    order by x.duration desc, x.pid;
$$;

-- Client connections by role, application and state, against max_connections.
create or replace function dbops_inspect_connections()
returns table (
    role text, application text, state text, connections int, oldest_seconds int,
    max_connections int
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select a.usename::text, a.application_name, coalesce(a.state, 'unknown'),
           count(*)::int, floor(extract(epoch from now() - min(a.backend_start)))::int,
           current_setting('max_connections')::int
    from pg_stat_activity a
    where a.backend_type = 'client backend'
    group by 1, 2, 3
    order by 4 desc, 1, 2, 3;
$$;

-- Every user table with its size: heap, indexes, TOAST, and the planner's row estimate.
create or replace function dbops_inspect_table_sizes()
returns table (
    schema text, "table" text, total_bytes bigint, table_bytes bigint, index_bytes bigint,
    toast_bytes bigint, rows_estimate bigint
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select n.nspname::text, c.relname::text, pg_total_relation_size(c.oid),
           pg_relation_size(c.oid), pg_indexes_size(c.oid),
           coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
           greatest(c.reltuples, 0)::bigint
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'm')
      and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg\_toast%' and n.nspname not like 'pg\_temp%'
    order by 3 desc, 1, 2;
$$;

-- Indexes by use: never-scanned ones first (candidates to drop), then the biggest.
create or replace function dbops_inspect_index_usage()
returns table (
    schema text, "table" text, index text, scans bigint, size_bytes bigint, is_unique boolean,
    is_primary boolean
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select s.schemaname::text, s.relname::text, s.indexrelname::text, s.idx_scan,
           pg_relation_size(s.indexrelid), i.indisunique, i.indisprimary
    from pg_stat_user_indexes s
    join pg_index i on i.indexrelid = s.indexrelid
    order by 4, 5 desc, 1, 2, 3;
$$;

-- Buffer cache hit ratio for tables and for indexes (user objects, since stats reset).
create or replace function dbops_inspect_cache_hit()
returns table (name text, hits bigint, reads bigint, hit_percent numeric)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select x.name, x.hits, x.reads,
           case when x.hits + x.reads > 0
                then round(100.0 * x.hits / (x.hits + x.reads), 2) end
    from (
        select 'tables' as name, coalesce(sum(t.heap_blks_hit), 0)::bigint as hits,
               coalesce(sum(t.heap_blks_read), 0)::bigint as reads
        from pg_statio_user_tables t
        union all
        select 'indexes', coalesce(sum(i.idx_blks_hit), 0)::bigint,
               coalesce(sum(i.idx_blks_read), 0)::bigint
        from pg_statio_user_indexes i
    ) x;
$$;

-- Dead rows and the last (auto)vacuum and (auto)analyze of each user table.
create or replace function dbops_inspect_vacuum()
returns table (
    schema text, "table" text, live_rows bigint, dead_rows bigint, dead_percent numeric,
    last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz,
    last_autoanalyze timestamptz, vacuum_count bigint, autovacuum_count bigint
)
language sql stable as $$
    select set_config('transaction_read_only', 'on', true);
    select s.schemaname::text, s.relname::text, s.n_live_tup, s.n_dead_tup,
           case when s.n_live_tup + s.n_dead_tup > 0
                then round(100.0 * s.n_dead_tup / (s.n_live_tup + s.n_dead_tup), 1) end,
           s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
           s.vacuum_count, s.autovacuum_count
    from pg_stat_user_tables s
    order by 4 desc, 1, 2;
$$;
