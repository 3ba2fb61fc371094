-- Audit runs get a uuid identity (`run_id`), so that `dbops audit show RUN` takes a run id
-- or a unique prefix of at least 6 hex digits of one, resolved like job and worker ids
-- (dbops_resolve_ids, kind 'audit_run'). The bigserial `id` stays the internal key (row
-- order, the "previous run" comparison, retention).
--
-- Existing rows get a random run_id when the column is added (a volatile default is
-- evaluated per row). The unique index makes a prefix lookup a range scan.

alter table dbops_audit_runs
    add column if not exists run_id uuid not null default gen_random_uuid();
create unique index if not exists dbops_audit_runs_run_id_key on dbops_audit_runs (run_id);

-- Saving and listing runs with their run_id: new functions rather than a new return type
-- for dbops_audit_save / dbops_audit_history (0017). `create or replace` cannot change a
-- return type, and `dbops db migrate --print` is a script that re-runs every migration in
-- order: 0017 re-declaring the old shape after a drop here would fail on the second run.
-- The 0017 functions stay as they are (a dbops of the previous version still calls them).
create or replace function dbops_audit_run_save(
    p_generated_at timestamptz,
    p_score int,
    p_verdict text,
    p_checks jsonb,
    p_duration_ms double precision default null,
    p_selection jsonb default '{}'::jsonb,
    p_operator text default null,
    p_keep_days int default 90
) returns table (id bigint, run_id uuid)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    new_id bigint;
    new_run_id uuid;
begin
    if p_score is null or p_score < 0 or p_score > 100 then
        raise exception 'audit score must be between 0 and 100' using errcode = '22023';
    end if;
    if p_verdict is null or p_verdict not in ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN') then
        raise exception 'unknown audit verdict %', p_verdict using errcode = '22023';
    end if;
    insert into dbops_audit_runs (generated_at, score, verdict, checks, duration_ms, selection, operator)
    values (coalesce(p_generated_at, now()), p_score, p_verdict, coalesce(p_checks, '[]'::jsonb),
            p_duration_ms, coalesce(p_selection, '{}'::jsonb), p_operator)
    returning dbops_audit_runs.id, dbops_audit_runs.run_id into new_id, new_run_id;
    if p_keep_days is not null and p_keep_days > 0 then
        delete from dbops_audit_runs r
         where r.generated_at < now() - make_interval(days => p_keep_days);
    end if;
    id := new_id;
    run_id := new_run_id;
    return next;
end;
$$;

create or replace function dbops_audit_run_history(p_limit int default 20)
returns table (
    id bigint, run_id uuid, generated_at timestamptz, score int, verdict text,
    duration_ms double precision, ok int, warning int, critical int, unknown int, skipped int,
    selection jsonb, operator text
)
language plpgsql stable as $$
#variable_conflict use_column
begin
    if p_limit is null or p_limit < 1 or p_limit > 10000 then
        raise exception '--limit must be between 1 and 10000' using errcode = '22023';
    end if;
    return query
    select r.id, r.run_id, r.generated_at, r.score, r.verdict, r.duration_ms,
           (select count(*)::int from jsonb_array_elements(r.checks) c where c->>'severity' = 'ok'),
           (select count(*)::int from jsonb_array_elements(r.checks) c where c->>'severity' = 'warning'),
           (select count(*)::int from jsonb_array_elements(r.checks) c where c->>'severity' = 'critical'),
           (select count(*)::int from jsonb_array_elements(r.checks) c where c->>'severity' = 'unknown'),
           (select count(*)::int from jsonb_array_elements(r.checks) c where c->>'severity' = 'skipped'),
           r.selection, r.operator
      from dbops_audit_runs r
     order by r.generated_at desc, r.id desc
     limit p_limit;
end;
$$;

-- One stored run, whole, for `dbops audit show`: the run with this run_id, or the newest
-- run when p_run_id is null (`latest`). `previous` is the run that was "the previous run"
-- when it was made (the newest earlier run with the same selection, as audit.previous
-- finds it), as jsonb {id, run_id, generated_at, score, verdict, checks}, or null.
-- Unknown run -> P0002 (exit 4).
create or replace function dbops_audit_run(p_run_id uuid default null)
returns table (
    id bigint, run_id uuid, generated_at timestamptz, score int, verdict text, checks jsonb,
    duration_ms double precision, selection jsonb, operator text, previous jsonb
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    found_row dbops_audit_runs%rowtype;
begin
    if p_run_id is null then
        select * into found_row from dbops_audit_runs r
         order by r.generated_at desc, r.id desc limit 1;
        if not found then
            raise exception 'not found: no stored audit runs (run `dbops audit`)'
                using errcode = 'P0002';
        end if;
    else
        select * into found_row from dbops_audit_runs r where r.run_id = p_run_id;
        if not found then
            raise exception 'not found: no audit run %', p_run_id using errcode = 'P0002';
        end if;
    end if;
    return query
    select found_row.id, found_row.run_id, found_row.generated_at, found_row.score,
           found_row.verdict, found_row.checks, found_row.duration_ms, found_row.selection,
           found_row.operator,
           (select jsonb_build_object('id', p.id, 'run_id', p.run_id,
                                      'generated_at', p.generated_at, 'score', p.score,
                                      'verdict', p.verdict, 'checks', p.checks)
              from dbops_audit_runs p
             where p.selection = found_row.selection
               and (p.generated_at, p.id) < (found_row.generated_at, found_row.id)
             order by p.generated_at desc, p.id desc
             limit 1);
end;
$$;

-- audit.previous now also names the previous run by its run_id.
create or replace function dbops_audit_check_audit_previous(args jsonb) returns jsonb language plpgsql stable as $$
declare
    wanted constant jsonb := nullif(args->'selection', 'null'::jsonb);
begin
    perform dbops_audit_require(array['dbops_audit_runs'], null, 'dbops_audit_runs', '42501');
    return (select jsonb_build_object('id', r.id, 'run_id', r.run_id,
                                      'generated_at', r.generated_at,
                                      'score', r.score, 'verdict', r.verdict,
                                      'checks', r.checks, 'selection', r.selection)
              from dbops_audit_runs r
             where wanted is null or r.selection = wanted
             order by r.generated_at desc, r.id desc
             limit 1);
end;
$$;

-- Short ids: 'audit_run' joins 'job' and 'worker' (0014 explains the range scan).
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
