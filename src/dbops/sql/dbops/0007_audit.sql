-- `dbops audit`: stored runs, and one read-only function that observes everything the
-- database-side checks need in a single round trip.
--
-- dbops_audit_observe() is STABLE (PostgreSQL refuses writes inside it) and, as its first
-- statement, switches the calling transaction to READ ONLY (`transaction_read_only` may
-- always be turned on mid-transaction), so nothing after it in that transaction can write
-- either. Each observation is one STABLE function, dbops_audit_check_<id>(args jsonb)
-- returning its jsonb; dbops_audit_observe calls each selected one in its own exception
-- block: a missing table, a missing column or a privilege the role lacks turns that one
-- observation into state `unknown` (or `skipped` when an optional dbops table of another
-- feature is absent) with a reason, never an error for the whole audit. The functions
-- that read the application's tables are plpgsql, which resolves names at run time, so
-- this file installs even before the tables it reads exist.

create table if not exists dbops_audit_runs (
    id bigserial primary key,
    generated_at timestamptz not null default now(),
    score int not null check (score between 0 and 100),
    verdict text not null check (verdict in ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
    checks jsonb not null default '[]'::jsonb,
    duration_ms double precision,
    selection jsonb not null default '{}'::jsonb,
    operator text
);
create index if not exists dbops_audit_runs_generated_idx
    on dbops_audit_runs (generated_at desc, id desc);
-- A uuid identity, so that `dbops audit show RUN` takes a run id or a unique prefix of one
-- (dbops_resolve_ids, kind 'audit_run'); the bigserial stays the internal key (row order,
-- the previous-run comparison, retention). Rows stored before it get a random one (a
-- volatile default is evaluated per row); the unique index makes a prefix a range scan.
alter table dbops_audit_runs
    add column if not exists run_id uuid not null default gen_random_uuid();
create unique index if not exists dbops_audit_runs_run_id_key on dbops_audit_runs (run_id);

-- Does row-level security hide rows of table p_table from the current role? Yes when RLS
-- applies to the role and no permissive policy for reading names it (directly, through
-- role membership, or as PUBLIC). dbops' own `dbops_not_api_roles` policy (migrations.py
-- PROTECT) admits every role but Supabase's API roles, so an operator or read-only role
-- (`dbops db roles`) reads dbops' tables while `anon` does not.
create or replace function dbops_audit_rls_hides(p_table text) returns boolean
language sql stable as $$
    select coalesce(row_security_active(to_regclass(p_table)), false) and not exists (
        select 1 from pg_policy p
        where p.polrelid = to_regclass(p_table) and p.polpermissive and p.polcmd in ('r', '*')
          and (0 = any (p.polroles) or exists (
                   select 1 from unnest(p.polroles) as r(oid)
                   where pg_has_role(current_user, r.oid, 'USAGE')))
          and (p.polname <> 'dbops_not_api_roles'
               or current_user not in ('anon', 'authenticated'))
    )
$$;

-- What an observation needs before it runs: raise errcode DA001 (reported `skipped`, with
-- p_missing as the reason) when a table of p_tables does not exist and p_missing is set;
-- raise p_errcode when row-level security hides one of them from the current role
-- (p_hidden names them: 42501 is reported as "permission denied: ...", DA002 as is).
create or replace function dbops_audit_require(
    p_tables text[], p_missing text, p_hidden text, p_errcode text default 'DA002'
) returns void
language plpgsql stable as $$
begin
    if p_missing is not null
       and exists (select 1 from unnest(p_tables) as t(name) where to_regclass(t.name) is null) then
        raise exception '%', p_missing using errcode = 'DA001';
    end if;
    if exists (select 1 from unnest(p_tables) as t(name) where dbops_audit_rls_hides(t.name)) then
        raise exception 'row-level security hides % from role % (use the service role)',
                        p_hidden, current_user using errcode = p_errcode;
    end if;
end;
$$;

-- One function per observation: dbops_audit_check_<id with dots as underscores>(args)
-- returns the observed jsonb. `args` carries dbops_audit_observe's parameters without
-- their p_ prefix. A check raises errcode DA001 to be reported `skipped` (its message is
-- the reason), DA002 for `unknown` with its message; any other error is `unknown` too.

-- db.migrations: what dbops_schema_migrations records
create or replace function dbops_audit_check_db_migrations(args jsonb) returns jsonb language plpgsql stable as $$
begin
    if to_regclass('dbops_schema_migrations') is null then
        return jsonb_build_object('applied', '{}'::jsonb, 'installed', false);
    end if;
    perform dbops_audit_require(array['dbops_schema_migrations'], null,
                                'dbops_schema_migrations', '42501');
    return (select jsonb_build_object(
                       'applied', coalesce(jsonb_object_agg(s.version, s.checksum), '{}'::jsonb),
                       'installed', true)
              from dbops_schema_migrations s);
end;
$$;

-- db.schema: columns and indexes of the tables dbops relies on (catalog only)
create or replace function dbops_audit_check_db_schema(args jsonb) returns jsonb language sql stable as $$
    select jsonb_build_object('tables', coalesce(jsonb_object_agg(t.name,
           case when c.oid is null then null else jsonb_build_object(
               'columns', (
                   select coalesce(jsonb_agg(a.attname::text order by a.attnum), '[]'::jsonb)
                     from pg_attribute a
                    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
               'indexes', (
                   select coalesce(jsonb_agg(jsonb_build_object(
                              'name', ic.relname,
                              'unique', i.indisunique,
                              'valid', i.indisvalid and i.indisready,
                              'predicate', pg_get_expr(i.indpred, i.indrelid),
                              'columns', (
                                  select jsonb_agg(pg_get_indexdef(i.indexrelid, k, true)
                                                   order by k)
                                    from generate_series(1, i.indnkeyatts::int) k)
                          ) order by ic.relname), '[]'::jsonb)
                     from pg_index i join pg_class ic on ic.oid = i.indexrelid
                    where i.indrelid = c.oid)
           ) end), '{}'::jsonb))
      from jsonb_array_elements_text(args->'schema_tables') as t(name)
      left join pg_class c on c.oid = to_regclass(t.name)
$$;

-- db.legacy_status: jobs whose status is not one of the current values. With an index
-- led by `status` (jobs_status_idx) the distinct values are found by a loose index
-- scan (one probe per value) and only the unexpected ones are counted.
create or replace function dbops_audit_check_db_legacy_status(args jsonb) returns jsonb language plpgsql stable as $$
declare
    current_values constant text[] :=
        array['pending', 'in_progress', 'completed', 'failed', 'cancelled'];
begin
    if exists (
        select 1 from pg_index i
         where i.indrelid = to_regclass('jobs') and i.indisvalid and i.indpred is null
           and pg_get_indexdef(i.indexrelid, 1, true) = 'status'
    ) then
        return (
            with recursive s(status) as (
                (select j.status from jobs j where j.status is not null
                  order by j.status limit 1)
                union all
                select (select j.status from jobs j where j.status > s.status
                         order by j.status limit 1)
                  from s where s.status is not null
            )
            select jsonb_build_object('statuses', coalesce(jsonb_object_agg(
                       x.status, (select count(*) from jobs j where j.status = x.status)),
                       '{}'::jsonb))
              from s x
             where x.status is not null and x.status <> all (current_values));
    end if;
    return (select jsonb_build_object('statuses', coalesce(jsonb_object_agg(c.status, c.n),
                                                           '{}'::jsonb))
              from (select j.status, count(*) as n from jobs j
                     where j.status <> all (current_values)
                     group by j.status) c);
end;
$$;

-- db.idempotency_keys: a unique index, else count the duplicates
create or replace function dbops_audit_check_db_idempotency_keys(args jsonb) returns jsonb language plpgsql stable as $$
declare
    n bigint;
    m bigint;
begin
    if to_regclass('job_results') is null then
        raise exception 'relation "job_results" does not exist' using errcode = '42P01';
    end if;
    if exists (
        select 1 from pg_index i
         where i.indrelid = to_regclass('job_results') and i.indisunique
           and i.indisvalid and i.indpred is null and i.indnkeyatts = 1
           and pg_get_indexdef(i.indexrelid, 1, true) = 'idempotency_key'
    ) then
        -- Unique by construction: no need to scan the table.
        perform 1 from job_results limit 1;  -- still proves we may read it
        return jsonb_build_object('unique_index', true, 'duplicate_keys', 0,
                                  'duplicate_rows', 0, 'sample', '[]'::jsonb);
    end if;
    select count(*), coalesce(sum(d.n), 0) into n, m
      from (select r.idempotency_key, count(*) as n from job_results r
             where r.idempotency_key is not null
             group by r.idempotency_key having count(*) > 1) d;
    return jsonb_build_object(
        'unique_index', false, 'duplicate_keys', n, 'duplicate_rows', m,
        'sample', coalesce((
            select jsonb_agg(d.job_id) from (
                select min(r.job_id::text) as job_id from job_results r
                 where r.idempotency_key is not null
                 group by r.idempotency_key having count(*) > 1
                 order by 1 limit 5) d), '[]'::jsonb));
end;
$$;

-- jobs.stale: in progress, and neither the row nor a worker holding it shows life
create or replace function dbops_audit_check_jobs_stale(args jsonb) returns jsonb language plpgsql stable as $$
declare
    stale_cut constant timestamptz :=
        now() - make_interval(secs => (args->>'stale_seconds')::int);
begin
    return (with stale as (
            select j.id, greatest(j.updated_at, h.beat) as activity
              from jobs j
              left join lateral (
                  select max(w.last_heartbeat) as beat from worker_heartbeats w
                   where w.current_job_id = j.id) h on true
             where j.status = 'in_progress'
               and j.updated_at < stale_cut
               and (h.beat is null or h.beat < stale_cut)
        )
        select jsonb_build_object(
                   'count', count(*),
                   'oldest_age_seconds', extract(epoch from now() - min(s.activity))::float8,
                   'sample', coalesce((select jsonb_agg(x.id) from
                       (select s2.id from stale s2 order by s2.activity, s2.id limit 5) x),
                       '[]'::jsonb))
          from stale s);
end;
$$;

-- jobs.orphaned: pending for longer than the threshold, no `queue_claimed` event and
-- no dbops re-queue since it became pending (the definition of dbops_jobs_orphans; the
-- re-queue condition only where the jobs feature's dbops_job_recoveries exists)
create or replace function dbops_audit_check_jobs_orphaned(args jsonb) returns jsonb language plpgsql stable as $$
declare
    observed jsonb;
begin
    execute format($q$
        with orphaned as (
            select j.id, j.updated_at from jobs j
             where j.status = 'pending'
               and j.updated_at < now() - make_interval(secs => $1)
               and not exists (
                   select 1 from queue_history q
                    where q.job_id = j.id and q.event = 'queue_claimed'
                      and q.created_at >= j.updated_at)
               %s
        )
        select jsonb_build_object(
                   'count', count(*),
                   'oldest_age_seconds', extract(epoch from now() - min(o.updated_at))::float8,
                   'sample', coalesce((select jsonb_agg(x.id) from
                       (select o2.id from orphaned o2 order by o2.updated_at, o2.id
                         limit 5) x), '[]'::jsonb))
          from orphaned o
        $q$,
        case when to_regclass('dbops_job_recoveries') is not null then
            'and not exists (select 1 from dbops_job_recoveries r where r.job_id = j.id '
            'and r.action = ''requeued'' and r.created_at >= j.updated_at)'
        else '' end)
       into observed using (args->>'orphan_seconds')::int;
    return observed;
end;
$$;

-- jobs.error_rate: failed among jobs that finished inside the window
create or replace function dbops_audit_check_jobs_error_rate(args jsonb) returns jsonb language plpgsql stable as $$
begin
    return (select jsonb_build_object(
                   'finished', count(*),
                   'failed', count(*) filter (where j.status = 'failed'),
                   'window_seconds', (args->>'error_window_seconds')::int)
          from jobs j
         where j.status in ('completed', 'complete', 'failed')
           and coalesce(j.completed_at, j.updated_at)
               >= now() - make_interval(secs => (args->>'error_window_seconds')::int));
end;
$$;

-- jobs.stuck_submitting: job_results rows left in `submitting`
create or replace function dbops_audit_check_jobs_stuck_submitting(args jsonb) returns jsonb language plpgsql stable as $$
begin
    return (with stuck as (
            select r.job_id, r.updated_at from job_results r
             where r.status = 'submitting'
               and r.updated_at < now() - make_interval(secs => (args->>'submitting_seconds')::int)
        )
        select jsonb_build_object(
                   'count', count(*),
                   'oldest_age_seconds', extract(epoch from now() - min(s.updated_at))::float8,
                   'sample', coalesce((select jsonb_agg(distinct x.job_id) from
                       (select s2.job_id from stuck s2 order by s2.updated_at limit 5) x),
                       '[]'::jsonb))
          from stuck s);
end;
$$;

-- jobs.recovery_cap: jobs re-queued recovery_cap times or more (or abandoned at the
-- cap) by `dbops jobs recover`, recovered within the error window, and not completed
-- or cancelled since (dbops_job_recoveries, from the jobs feature). `abandoned_caps`:
-- the cap each abandoned job was failed at (`--max-recoveries` of that run, from its
-- `abandoned_stale` queue_history event; null when no such event is found), counted.
create or replace function dbops_audit_check_jobs_recovery_cap(args jsonb) returns jsonb language plpgsql stable as $$
declare
    cap constant int := (args->>'recovery_cap')::int;
begin
    perform dbops_audit_require(
        array['dbops_job_recoveries'],
        'the jobs recovery history (dbops_job_recoveries) is not installed', null);
    if cap is null or cap <= 0 then
        raise exception 'no recovery cap configured' using errcode = 'DA001';
    end if;
    return (with per_job as (
            select r.job_id,
                   count(*) filter (where r.action = 'requeued') as requeued,
                   bool_or(r.action = 'abandoned') as abandoned
              from dbops_job_recoveries r
             group by r.job_id
            having max(r.created_at)
                   >= now() - make_interval(secs => (args->>'error_window_seconds')::int)
        ),
        capped as (
            select p.job_id, p.requeued, p.abandoned, j.status
              from per_job p
              left join jobs j on j.id = p.job_id
             where (p.requeued >= cap or p.abandoned)
               and coalesce(j.status, '') not in ('completed', 'complete', 'cancelled')
        ),
        abandoned_at as (
            select c.job_id,
                   (select case when h.details->>'max_recoveries' ~ '^[0-9]{1,9}$'
                                then (h.details->>'max_recoveries')::int end
                      from queue_history h
                     where h.job_id = c.job_id and h.event = 'abandoned_stale'
                       and h.details->>'source' = 'dbops'
                     order by h.created_at desc limit 1) as used_cap
              from capped c
             where c.abandoned
        )
        select jsonb_build_object(
                   'count', count(*),
                   'abandoned', count(*) filter (where c.abandoned),
                   'max_recoveries', coalesce(max(c.requeued), 0),
                   'cap', cap,
                   'abandoned_caps', coalesce((select jsonb_agg(jsonb_build_object(
                           'cap', y.used_cap, 'count', y.n) order by y.used_cap nulls last)
                       from (select a.used_cap, count(*) as n from abandoned_at a
                              group by a.used_cap) y), '[]'::jsonb),
                   'sample', coalesce((select jsonb_agg(x.job_id) from
                       (select c2.job_id from capped c2
                         order by c2.requeued desc, c2.job_id limit 5) x), '[]'::jsonb))
          from capped c);
end;
$$;

-- workers.dead_holding: no heartbeat for dead_seconds, current_job_id still set
create or replace function dbops_audit_check_workers_dead_holding(args jsonb) returns jsonb language plpgsql stable as $$
begin
    return (with dead as (
            select w.worker_id, w.last_heartbeat, w.current_job_id,
                   (j.status = 'in_progress') as holds_running
              from worker_heartbeats w
              left join jobs j on j.id = w.current_job_id
             where w.current_job_id is not null
               and w.last_heartbeat < now() - make_interval(secs => (args->>'dead_seconds')::int)
        )
        select jsonb_build_object(
                   'holding_in_progress', count(*) filter (where d.holds_running),
                   'holding_other', count(*) filter (where d.holds_running is not true),
                   'oldest_age_seconds', extract(epoch from now() - min(d.last_heartbeat))::float8,
                   'sample', coalesce((select jsonb_agg(x.worker_id) from
                       (select d2.worker_id from dead d2
                         order by d2.holds_running desc nulls last, d2.last_heartbeat
                         limit 5) x), '[]'::jsonb),
                   'jobs', coalesce((select jsonb_agg(x.current_job_id) from
                       (select d3.current_job_id from dead d3 where d3.holds_running
                         order by d3.last_heartbeat limit 5) x), '[]'::jsonb))
          from dead d);
end;
$$;

-- workers.live: live workers, and pending jobs as the database's view of backlog
create or replace function dbops_audit_check_workers_live(args jsonb) returns jsonb language plpgsql stable as $$
begin
    return (select jsonb_build_object(
                   'live', count(*) filter (
                       where w.last_heartbeat
                             >= now() - make_interval(secs => (args->>'dead_seconds')::int)
                         and w.status in ('starting', 'idle', 'running')),
                   'total', count(*),
                   'pending_jobs', (select count(*) from jobs j where j.status = 'pending'))
          from worker_heartbeats w);
end;
$$;

-- ratelimit.rules: which presets have a rule (ratelimit feature)
create or replace function dbops_audit_check_ratelimit_rules(args jsonb) returns jsonb language plpgsql stable as $$
begin
    perform dbops_audit_require(
        array['dbops_rate_limit_rules'],
        'the rate-limit rules table (dbops_rate_limit_rules) is not installed',
        'dbops_rate_limit_rules');
    return (select jsonb_build_object(
                       'presets', coalesce(jsonb_agg(r.name order by r.name)
                                           filter (where r.enabled), '[]'::jsonb),
                       'disabled', coalesce(jsonb_agg(r.name order by r.name)
                                            filter (where not r.enabled), '[]'::jsonb))
              from dbops_rate_limit_rules r);
end;
$$;

-- ratelimit.429_ratio: delegated to the ratelimit feature's function
create or replace function dbops_audit_check_ratelimit_429_ratio(args jsonb) returns jsonb language plpgsql stable as $$
declare
    observed jsonb;
begin
    if to_regprocedure('dbops_ratelimit_429_ratio(integer)') is null then
        raise exception 'dbops_ratelimit_429_ratio() (the ratelimit migration) is not installed'
              using errcode = 'DA001';
    end if;
    -- the denials table is optional (a table that does not exist hides nothing)
    perform dbops_audit_require(array['dbops_rate_limit_denials'], null,
                                'dbops_rate_limit_denials');
    execute 'select to_jsonb(r) from dbops_ratelimit_429_ratio($1) r limit 1'
       into observed using (args->>'ratio_window_seconds')::int;
    return coalesce(observed, '{}'::jsonb)
           || jsonb_build_object('window_seconds', (args->>'ratio_window_seconds')::int);
end;
$$;

-- ratelimit.blocks_overrides: active blocks and temporary overrides
create or replace function dbops_audit_check_ratelimit_blocks_overrides(args jsonb) returns jsonb language plpgsql stable as $$
begin
    perform dbops_audit_require(
        array['dbops_rate_limit_blocks', 'dbops_rate_limit_overrides'],
        'the rate-limit blocks/overrides tables are not installed',
        'the rate-limit blocks/overrides');
    return jsonb_build_object(
        'blocks', (select count(*) from dbops_rate_limit_blocks b
                    where b.expires_at > now() and b.lifted_at is null),
        'overrides', (select count(*) from dbops_rate_limit_overrides o
                       where o.expires_at > now() and o.ended_at is null),
        'next_expiry_seconds', extract(epoch from (
            select min(e.expires_at) from (
                select b.expires_at from dbops_rate_limit_blocks b
                 where b.expires_at > now() and b.lifted_at is null
                union all
                select o.expires_at from dbops_rate_limit_overrides o
                 where o.expires_at > now() and o.ended_at is null) e) - now())::float8);
end;
$$;

-- ratelimit.cleanup_overdue: sliding-window rows past retention (count capped)
create or replace function dbops_audit_check_ratelimit_cleanup_overdue(args jsonb) returns jsonb language plpgsql stable as $$
begin
    return (
        select jsonb_build_object('count', least(s.n, 100000), 'capped', s.n > 100000,
                                  'older_than_seconds', (args->>'cleanup_seconds')::int)
          from (select count(*) as n from (
                    select 1 from rate_limit_requests r
                     where r.created_at
                           < now() - make_interval(secs => (args->>'cleanup_seconds')::int)
                     limit 100001) l) s);
end;
$$;

-- audit.previous: the last stored run with the same --check/--skip selection (any
-- run when the selection is null), for "changed since the previous run"
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

-- audit.previous_dlq: the DLQ depth the last run that measured it stored (any
-- selection), for queue.dlq_growth
create or replace function dbops_audit_check_audit_previous_dlq(args jsonb) returns jsonb language plpgsql stable as $$
begin
    perform dbops_audit_require(array['dbops_audit_runs'], null, 'dbops_audit_runs', '42501');
    return (select jsonb_build_object('id', r.id, 'generated_at', r.generated_at,
                                      'depth', c.value->'observed',
                                      'queue', c.value->'details'->>'queue')
              from dbops_audit_runs r
             cross join lateral jsonb_array_elements(r.checks) c(value)
             where c.value->>'id' = 'queue.dlq_depth'
               and jsonb_typeof(c.value->'observed') = 'number'
               and c.value->>'severity' not in ('skipped', 'unknown')
             order by r.generated_at desc, r.id desc
             limit 1);
end;
$$;

-- One row per observation in p_only (all when null), in this order: each check function
-- called through one dispatcher that times it and turns its errors into a state.
create or replace function dbops_audit_observe(
    p_stale_seconds int default 600,
    p_dead_seconds int default 120,
    p_orphan_seconds int default 1800,
    p_submitting_seconds int default 900,
    p_error_window_seconds int default 86400,
    p_ratio_window_seconds int default 3600,
    p_cleanup_seconds int default 86400,
    p_recovery_cap int default null,
    p_schema_tables text[] default null,
    p_only text[] default null,
    p_selection jsonb default null
) returns table (check_id text, state text, observed jsonb, reason text, elapsed_ms double precision)
language plpgsql stable as $$
#variable_conflict use_column
declare
    t0 timestamptz;
    args jsonb;
    ids constant text[] := array[
        'db.migrations', 'db.schema', 'db.legacy_status', 'db.idempotency_keys',
        'jobs.stale', 'jobs.orphaned', 'jobs.error_rate', 'jobs.stuck_submitting',
        'jobs.recovery_cap', 'workers.dead_holding', 'workers.live',
        'ratelimit.rules', 'ratelimit.429_ratio', 'ratelimit.blocks_overrides',
        'ratelimit.cleanup_overdue', 'audit.previous', 'audit.previous_dlq'];
begin
    perform set_config('transaction_read_only', 'on', true);
    if coalesce(p_stale_seconds, 0) <= 0 or coalesce(p_dead_seconds, 0) <= 0
        or coalesce(p_orphan_seconds, 0) <= 0 or coalesce(p_submitting_seconds, 0) <= 0
        or coalesce(p_error_window_seconds, 0) <= 0 or coalesce(p_ratio_window_seconds, 0) <= 0
        or coalesce(p_cleanup_seconds, 0) <= 0 then
        raise exception 'audit durations must be positive numbers of seconds' using errcode = '22023';
    end if;
    args := jsonb_build_object(
        'stale_seconds', p_stale_seconds, 'dead_seconds', p_dead_seconds,
        'orphan_seconds', p_orphan_seconds, 'submitting_seconds', p_submitting_seconds,
        'error_window_seconds', p_error_window_seconds,
        'ratio_window_seconds', p_ratio_window_seconds, 'cleanup_seconds', p_cleanup_seconds,
        'recovery_cap', p_recovery_cap, 'selection', p_selection,
        'schema_tables', to_jsonb(coalesce(p_schema_tables, array[
            'jobs', 'job_results', 'worker_heartbeats', 'queue_history', 'rate_limit_requests'])));
    foreach check_id in array ids loop
        continue when p_only is not null and not (check_id = any(p_only));
        t0 := clock_timestamp(); state := 'observed'; reason := null;
        begin
            execute format('select %I($1)', 'dbops_audit_check_' || replace(check_id, '.', '_'))
               into observed using args;
        exception
            when sqlstate 'DA001' then
                state := 'skipped'; observed := null; reason := sqlerrm;
            when sqlstate 'DA002' then
                state := 'unknown'; observed := null; reason := sqlerrm;
            when insufficient_privilege then
                state := 'unknown'; observed := null; reason := 'permission denied: ' || sqlerrm;
            when others then
                state := 'unknown'; observed := null; reason := sqlstate || ': ' || sqlerrm;
        end;
        elapsed_ms := extract(epoch from clock_timestamp() - t0) * 1000;
        return next;
    end loop;
end;
$$;

-- Storing and reading runs (save, history, previous): 0017_audit_runs.sql.
