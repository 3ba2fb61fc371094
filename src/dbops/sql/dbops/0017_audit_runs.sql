-- `dbops audit`: storing runs in dbops_audit_runs (0007) and reading them back for
-- `audit history` and the "changed since the previous run" comparison.

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

-- dbops_audit_save / dbops_audit_history: the shapes of the previous release (no run_id),
-- kept for a dbops of that release; they call the functions above. New return types get
-- new names because `create or replace` cannot change one and `db migrate --print` is a
-- script that re-runs every migration in order.
create or replace function dbops_audit_save(
    p_generated_at timestamptz, p_score int, p_verdict text, p_checks jsonb,
    p_duration_ms double precision default null, p_selection jsonb default '{}'::jsonb,
    p_operator text default null, p_keep_days int default 90
) returns table (id bigint)
language plpgsql volatile as $$
begin
    return query select s.id from dbops_audit_run_save(
        p_generated_at, p_score, p_verdict, p_checks, p_duration_ms, p_selection, p_operator,
        p_keep_days) s;
end;
$$;

create or replace function dbops_audit_history(p_limit int default 20)
returns table (
    id bigint, generated_at timestamptz, score int, verdict text, duration_ms double precision,
    ok int, warning int, critical int, unknown int, skipped int, selection jsonb, operator text
)
language plpgsql stable as $$
begin
    return query select h.id, h.generated_at, h.score, h.verdict, h.duration_ms, h.ok,
                        h.warning, h.critical, h.unknown, h.skipped, h.selection, h.operator
                   from dbops_audit_run_history(p_limit) h;
end;
$$;

-- The latest stored run (with this selection, when given).
create or replace function dbops_audit_previous(p_selection jsonb default null)
returns table (
    id bigint, generated_at timestamptz, score int, verdict text, checks jsonb, selection jsonb
)
language sql stable as $$
    select r.id, r.generated_at, r.score, r.verdict, r.checks, r.selection
      from dbops_audit_runs r
     where p_selection is null or r.selection = p_selection
     order by r.generated_at desc, r.id desc
     limit 1
$$;
