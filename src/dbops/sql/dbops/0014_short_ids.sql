-- Short ids: every command that takes a job or worker id also takes a unique prefix of at
-- least 6 hex digits (dbops.services.ids parses it; DLQ message ids are matched by the
-- service against the messages it scanned, with no SQL).
--
-- dbops_resolve_ids(kind, prefixes, limit): for each prefix (lowercase hex digits, hyphens
-- already dropped), the ids of that kind that start with it, at most p_limit per prefix,
-- in id order; a prefix that names nothing has no row. A whole list resolves in one call.
--   kind 'job'    -> jobs.id (uuid in every supported schema variant, see check.sql)
--   kind 'worker' -> worker_heartbeats.worker_id (uuid likewise)
--   kind 'audit_run' -> dbops_audit_runs.run_id (0007)
-- A prefix is turned into the range of uuids it covers (padded with 0s and with fs), so the
-- lookup is a range scan of the primary key index, never a sequential scan (`id::text like
-- 'abc%'` would read the whole table). uuid order is byte order, which is hex-digit order.
-- plpgsql so that installing it does not need the application tables (checked when called).
-- Bad input raises 22023 (exit 2).
create or replace function dbops_resolve_ids(
    p_kind text,
    p_prefixes text[],
    p_limit int default 6
) returns table (prefix text, id text)
language plpgsql stable as $$
declare
    v_table text;
    v_column text;
    v_bad text;
begin
    -- The one place a kind becomes a table: identifiers come from this list, never from
    -- the caller (the kind only selects a row).
    select k.tbl, k.col into v_table, v_column
    from (values ('job', 'jobs', 'id'),
                 ('worker', 'worker_heartbeats', 'worker_id'),
                 ('audit_run', 'dbops_audit_runs', 'run_id')) as k(kind, tbl, col)
    where k.kind = p_kind;
    if v_table is null then
        raise exception 'unknown id kind %: use job, worker or audit_run', coalesce(p_kind, 'null')
            using errcode = '22023';
    end if;
    if p_limit is null or p_limit < 1 or p_limit > 100 then
        raise exception 'limit must be 1 to 100' using errcode = '22023';
    end if;
    select string_agg(coalesce(x, 'null'), ', ') into v_bad
    from unnest(coalesce(p_prefixes, '{}'::text[])) x
    where x is null or x !~ '^[0-9a-f]{6,32}$';
    if v_bad is not null then
        raise exception 'invalid id prefix %: use 6 to 32 lowercase hex digits', left(v_bad, 200)
            using errcode = '22023';
    end if;
    return query execute format($q$
        with given as (
            select distinct x as prefix, rpad(x, 32, '0')::uuid as lo, rpad(x, 32, 'f')::uuid as hi
            from unnest($1) x
        )
        select g.prefix, m.id::text
        from given g
        cross join lateral (
            select t.%2$I as id from public.%1$I t
            where t.%2$I between g.lo and g.hi
            order by t.%2$I
            limit $2
        ) m
        order by 1, 2
    $q$, v_table, v_column) using coalesce(p_prefixes, '{}'::text[]), p_limit;
end;
$$;
