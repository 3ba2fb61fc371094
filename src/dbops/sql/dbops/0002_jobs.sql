-- dbops jobs: the recovery outbox/history and every dbops_jobs_* function.
--
-- Definitions (docs/jobs.md):
--   last sign of life of an in_progress job = greatest(jobs.updated_at, the latest
--     last_heartbeat of any worker whose current_job_id is the job);
--   stale    = in_progress and last sign of life older than the threshold;
--   orphaned = pending since longer than the threshold, with no `queue_claimed` event and
--              no dbops re-queue recorded since it became pending.
-- Durations are integer seconds. Bad input raises 22023 (exit 2), unknown ids P0002 (exit 4).
--
-- Application schemas differ (architecture.md section 3, `dbops db check`): customer_id may be a
-- uuid, history ids uuid or bigint, optional columns (package_size, priority_level,
-- started_at, metadata) may be absent. So every function reads customer_id as
-- `customer_id::text`, history ids as text, and the optional columns from the row's JSON
-- (`to_jsonb(j)`), which is empty where the column is absent; filters and locks use the
-- required columns only, so the indexes still serve them.

-- --------------------------------------------------------------------------- outbox
-- One row per job dbops re-queued or abandoned. For re-queued jobs the row is also the
-- outbox: it is written in the transaction that moves the job back to `pending` and
-- becomes `sent` (with the SQS MessageId) once SQS accepted the message. The message is
-- the job's fields plus this row's attempt, operator and created_at (= requeued_at), so a
-- re-send after a crash carries the same retry_attempt/requeued_by/requeued_at.
-- `lease_owner`/`sending_until` make sure two runs never send the same row.
create table if not exists dbops_job_recoveries (
    id bigserial primary key,
    job_id uuid not null,
    kind text not null check (kind in ('stale', 'orphan', 'manual')),
    action text not null check (action in ('requeued', 'abandoned')),
    attempt int not null,
    operator text not null,
    state text not null
        check (state in ('pending_send', 'sent', 'skipped', 'not_applicable')),
    previous_status text,
    last_activity_at timestamptz,
    worker_id uuid,
    message_id text,
    queue_url text,
    lease_owner text,
    sending_until timestamptz,
    send_attempts int not null default 0,
    last_error text,
    created_at timestamptz not null default now(),
    sent_at timestamptz
);
create index if not exists dbops_job_recoveries_job_idx
    on dbops_job_recoveries (job_id, created_at);
create index if not exists dbops_job_recoveries_unsent_idx
    on dbops_job_recoveries (id) where state = 'pending_send';

-- One row per `jobs recover`/`jobs requeue` run. `lease_owner` of the outbox rows is the
-- run id (random, made by the client). A run is alive while its lease (renewed as it
-- works) has not expired and, when it holds a session-level advisory lock (direct
-- Postgres, not through a transaction pooler), while that lock is held: a killed run's
-- session ends at once, so its rows are taken over at once, whatever host or container it
-- ran in; a stalled run loses its rows when its lease expires.
create table if not exists dbops_job_runs (
    run_id text primary key,
    operator text not null,
    command text not null,
    session_lock boolean not null default false,
    started_at timestamptz not null default now(),
    lease_until timestamptz not null,
    finished_at timestamptz
);

-- --------------------------------------------------------------------------- helpers
-- A queue_history row's event name: legacy rows carry status_from/status_to instead.
create or replace function dbops_history_event(p_doc jsonb) returns text
language sql immutable as $$
    select coalesce(p_doc->>'event',
        nullif(concat_ws(' -> ', coalesce(p_doc->>'status_from', '?'), p_doc->>'status_to'), '?'),
        'unknown')
$$;

create or replace function dbops_jobs_iso(p_at timestamptz) returns text
language sql stable as $$
    select to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

create or replace function dbops_jobs_run_alive(p_run_id text) returns boolean
language sql stable as $$
    select coalesce((
        select u.finished_at is null and u.lease_until > now()
               and (not u.session_lock or exists (
                   select 1 from pg_locks l
                   where l.locktype = 'advisory' and l.granted and l.objsubid = 2
                     and l.classid = 1684828275::oid
                     and l.objid = (hashtext(u.run_id)::bigint & 4294967295)::oid))
        from dbops_job_runs u where u.run_id = p_run_id), false)
$$;

-- A registered run that is no longer alive (unknown owners: only their lease counts).
create or replace function dbops_jobs_run_dead(p_run_id text) returns boolean
language sql stable as $$
    select exists (select 1 from dbops_job_runs u where u.run_id = p_run_id)
           and not dbops_jobs_run_alive(p_run_id)
$$;

create or replace function dbops_jobs_run_start(
    p_run_id text,
    p_operator text,
    p_command text,
    p_lease_seconds int,
    p_session_lock boolean default false
) returns table (run_id text, lease_until timestamptz)
language plpgsql volatile as $$
#variable_conflict use_column
begin
    if coalesce(p_run_id, '') = '' or coalesce(p_lease_seconds, 0) < 1 then
        raise exception 'a run id and a positive lease are required' using errcode = '22023';
    end if;
    if p_session_lock then
        perform pg_advisory_lock(1684828275, hashtext(p_run_id));
    end if;
    delete from dbops_job_runs u where u.lease_until < now() - interval '7 days';
    return query
    insert into dbops_job_runs as u (run_id, operator, command, session_lock, lease_until)
    values (p_run_id, coalesce(p_operator, ''), coalesce(p_command, ''),
            coalesce(p_session_lock, false), now() + make_interval(secs => p_lease_seconds))
    on conflict (run_id) do update set lease_until = excluded.lease_until
    returning u.run_id, u.lease_until;
end;
$$;

-- --------------------------------------------------------------------------- read
create or replace function dbops_jobs_list(
    p_status text default null,
    p_customer text default null,
    p_since_seconds int default null,
    p_limit int default 50
) returns table (
    id uuid, customer_id text, status text, priority_level int, package_size int,
    created_at timestamptz, updated_at timestamptz, started_at timestamptz,
    completed_at timestamptz, error_message text, metadata jsonb
)
language sql stable as $$
    select j.id, j.customer_id::text, j.status, (x.doc->>'priority_level')::int,
           (x.doc->>'package_size')::int, j.created_at, j.updated_at,
           (x.doc->>'started_at')::timestamptz, j.completed_at, j.error_message,
           coalesce(x.doc->'metadata', '{}'::jsonb)
    from jobs j
    cross join lateral (select to_jsonb(j) as doc) x
    where (p_status is null or j.status = p_status
           or (p_status = 'completed' and j.status = 'complete'))
      and (p_customer is null or j.customer_id::text = p_customer)
      and (p_since_seconds is null
           or j.created_at >= now() - make_interval(secs => p_since_seconds))
    order by j.created_at desc, j.id
    limit greatest(coalesce(p_limit, 50), 0)
$$;

-- Stale in_progress jobs, oldest activity first. A plain SQL function so the planner
-- inlines it: `explain select * from dbops_jobs_stale(...)` shows the real plan, which
-- walks the partial index jobs_in_progress_activity_idx (0003) and never scans jobs.
create or replace function dbops_jobs_stale(
    p_older_than_seconds int,
    p_limit int default 100,
    p_dead_after_seconds int default 120
) returns table (
    id uuid, customer_id text, status text, priority_level int, package_size int,
    created_at timestamptz, updated_at timestamptz, started_at timestamptz,
    last_activity_at timestamptz, age_seconds double precision,
    worker_id uuid, worker_status text, worker_last_heartbeat timestamptz,
    worker_alive boolean, recoveries int
)
language sql stable as $$
    select j.id, j.customer_id::text, j.status, (x.doc->>'priority_level')::int,
           (x.doc->>'package_size')::int, j.created_at,
           j.updated_at, (x.doc->>'started_at')::timestamptz,
           greatest(j.updated_at, w.last_heartbeat),
           extract(epoch from now() - greatest(j.updated_at, w.last_heartbeat))::float8,
           w.worker_id, w.status, w.last_heartbeat,
           coalesce(w.last_heartbeat >= now() - make_interval(secs => p_dead_after_seconds),
                    false),
           (select count(*)::int from dbops_job_recoveries r
             where r.job_id = j.id and r.action = 'requeued')
    from jobs j
    left join lateral (
        select h.worker_id, h.status, h.last_heartbeat
        from worker_heartbeats h
        where h.current_job_id = j.id
        order by h.last_heartbeat desc
        limit 1
    ) w on true
    cross join lateral (select to_jsonb(j) as doc) x
    where j.status = 'in_progress'
      and j.updated_at < now() - make_interval(secs => p_older_than_seconds)
      and (w.last_heartbeat is null
           or w.last_heartbeat < now() - make_interval(secs => p_older_than_seconds))
    order by j.updated_at
    limit greatest(coalesce(p_limit, 100), 0)
$$;

create or replace function dbops_jobs_orphans(
    p_older_than_seconds int,
    p_limit int default 100
) returns table (
    id uuid, customer_id text, status text, priority_level int, package_size int,
    created_at timestamptz, updated_at timestamptz, pending_since timestamptz,
    age_seconds double precision, recoveries int
)
language sql stable as $$
    select j.id, j.customer_id::text, j.status, (x.doc->>'priority_level')::int,
           (x.doc->>'package_size')::int, j.created_at,
           j.updated_at, j.updated_at,
           extract(epoch from now() - j.updated_at)::float8,
           (select count(*)::int from dbops_job_recoveries r
             where r.job_id = j.id and r.action = 'requeued')
    from jobs j
    cross join lateral (select to_jsonb(j) as doc) x
    where j.status = 'pending'
      and j.updated_at < now() - make_interval(secs => p_older_than_seconds)
      and not exists (
          select 1 from queue_history h
          where h.job_id = j.id and h.event = 'queue_claimed' and h.created_at >= j.updated_at
      )
      and not exists (
          select 1 from dbops_job_recoveries r
          where r.job_id = j.id and r.action = 'requeued' and r.created_at >= j.updated_at
      )
    order by j.updated_at
    limit greatest(coalesce(p_limit, 100), 0)
$$;

-- The shared preamble of dbops_jobs_get, _requeue and _fail. dbops_jobs_ids_array: 22023
-- unless the job ids are a JSON array (_requeue and _fail check it first, before their
-- other arguments). dbops_jobs_ids: those ids as distinct UUIDs; 22P02 for a bad UUID,
-- P0002 naming the ids that are not in jobs.
create or replace function dbops_jobs_ids_array(p_job_ids jsonb) returns void
language plpgsql immutable as $$
begin
    if p_job_ids is null or jsonb_typeof(p_job_ids) <> 'array' then
        raise exception 'job ids must be a JSON array of UUIDs' using errcode = '22023';
    end if;
end;
$$;

create or replace function dbops_jobs_ids(p_job_ids jsonb) returns uuid[]
language plpgsql stable as $$
declare
    v_ids uuid[];
    v_missing text;
begin
    perform dbops_jobs_ids_array(p_job_ids);
    v_ids := array(select distinct x::uuid from jsonb_array_elements_text(p_job_ids) x);
    select string_agg(m::text, ', ') into v_missing
    from unnest(v_ids) m
    where not exists (select 1 from jobs j where j.id = m);
    if v_missing is not null then
        raise exception 'not found: job %', v_missing using errcode = 'P0002';
    end if;
    return v_ids;
end;
$$;

-- skipped_changed when a job's status is not the one the operator saw in the preview
-- (p_expected: job id -> status), re-checked under the row lock; null otherwise.
create or replace function dbops_jobs_changed(p_expected jsonb, p_job_id uuid, p_status text)
returns text language sql stable as $$
    select case
        when p_expected ? p_job_id::text and p_expected->>p_job_id::text <> p_status then
            format('skipped_changed: status is %s now, %s when previewed (changed by someone else meanwhile)',
                   p_status, p_expected->>p_job_id::text)
    end
$$;

-- Several jobs by id, with their sign of life (for previews); P0002 names unknown ids.
create or replace function dbops_jobs_get(
    p_job_ids jsonb,
    p_dead_after_seconds int default 120
) returns table (
    id uuid, customer_id text, status text, priority_level int,
    created_at timestamptz, updated_at timestamptz, last_activity_at timestamptz,
    worker_id uuid, worker_alive boolean, recoveries int, unsent boolean, error_message text
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_ids uuid[];
begin
    v_ids := dbops_jobs_ids(p_job_ids);
    return query
    select j.id, j.customer_id::text, j.status, (to_jsonb(j)->>'priority_level')::int,
           j.created_at, j.updated_at,
           greatest(j.updated_at, w.last_heartbeat), w.worker_id,
           coalesce(w.last_heartbeat >= now() - make_interval(secs => p_dead_after_seconds),
                    false),
           (select count(*)::int from dbops_job_recoveries r
             where r.job_id = j.id and r.action = 'requeued'),
           exists (select 1 from dbops_job_recoveries r
                    where r.job_id = j.id and r.state = 'pending_send'),
           j.error_message
    from jobs j
    left join lateral (
        select h.worker_id, h.last_heartbeat from worker_heartbeats h
        where h.current_job_id = j.id order by h.last_heartbeat desc limit 1
    ) w on true
    where j.id = any (v_ids)
    order by array_position(v_ids, j.id);
end;
$$;

create or replace function dbops_jobs_show(
    p_job_id uuid,
    p_history_limit int default 20,
    p_dead_after_seconds int default 120
) returns table (
    job jsonb, last_activity_at timestamptz, results_by_status jsonb, history jsonb,
    worker jsonb, recoveries jsonb
)
language plpgsql stable as $$
#variable_conflict use_column
begin
    if not exists (select 1 from jobs j where j.id = p_job_id) then
        raise exception 'not found: job %', p_job_id using errcode = 'P0002';
    end if;
    return query
    select
        to_jsonb(j),
        greatest(j.updated_at, w.last_heartbeat),
        coalesce((select jsonb_object_agg(s.status, s.n) from (
            select r.status, count(*) as n from job_results r
            where r.job_id = j.id group by r.status) s), '{}'::jsonb),
        coalesce((select jsonb_agg(jsonb_build_object(
                    'id', h.doc->'id',
                    'event', dbops_history_event(h.doc),
                    'details', coalesce(h.doc->'details', '{}'::jsonb),
                    'worker_id', h.doc->'worker_id', 'created_at', h.created_at)
                    order by h.created_at desc, h.ord)
                  from (select to_jsonb(q) as doc, q.created_at,
                               row_number() over (order by q.created_at desc, q.id::text desc) as ord
                        from queue_history q where q.job_id = j.id
                        order by q.created_at desc, q.id::text desc
                        limit greatest(coalesce(p_history_limit, 20), 0)) h), '[]'::jsonb),
        case when w.worker_id is null then null else jsonb_build_object(
            'worker_id', w.worker_id, 'status', w.status, 'queue_name', w.queue_name,
            'last_heartbeat', w.last_heartbeat,
            'heartbeat_age_seconds', extract(epoch from now() - w.last_heartbeat)::float8,
            'alive', w.last_heartbeat >= now() - make_interval(secs => p_dead_after_seconds))
        end,
        coalesce((select jsonb_agg(jsonb_build_object(
                    'id', r.id, 'kind', r.kind, 'action', r.action, 'attempt', r.attempt,
                    'operator', r.operator, 'state', r.state, 'message_id', r.message_id,
                    'last_error', r.last_error, 'created_at', r.created_at,
                    'sent_at', r.sent_at) order by r.id)
                  from dbops_job_recoveries r where r.job_id = j.id), '[]'::jsonb)
    from jobs j
    left join lateral (
        select h.worker_id, h.status, h.queue_name, h.last_heartbeat from worker_heartbeats h
        where h.current_job_id = j.id order by h.last_heartbeat desc limit 1
    ) w on true
    where j.id = p_job_id;
end;
$$;

create or replace function dbops_jobs_stats(
    p_since_seconds int,
    p_submitting_seconds int default 900
) returns table (
    by_status jsonb, hourly jsonb, completed bigint, failed bigint,
    error_rate double precision, runtime_p50_seconds double precision,
    runtime_p95_seconds double precision, stuck_submitting bigint, legacy_complete bigint
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_since timestamptz;
begin
    if p_since_seconds is null or p_since_seconds <= 0 then
        raise exception 'since must be a positive number of seconds' using errcode = '22023';
    end if;
    v_since := now() - make_interval(secs => p_since_seconds);
    return query
    with finished as (
        select case when j.status = 'complete' then 'completed' else j.status end as status,
               coalesce(j.completed_at, j.updated_at) as done_at,
               (to_jsonb(j)->>'started_at')::timestamptz as started_at, j.completed_at
        from jobs j
        where j.status in ('completed', 'complete', 'failed')
          and coalesce(j.completed_at, j.updated_at) >= v_since
    ), hours as (
        select generate_series(date_trunc('hour', v_since), date_trunc('hour', now()),
                               interval '1 hour') as hour
    ), per_hour as (
        select date_trunc('hour', f.done_at) as hour,
               count(*) filter (where f.status = 'completed') as completed,
               count(*) filter (where f.status = 'failed') as failed
        from finished f group by 1
    ), totals as (
        select count(*) filter (where f.status = 'completed') as completed,
               count(*) filter (where f.status = 'failed') as failed,
               percentile_cont(0.5) within group (
                   order by extract(epoch from f.completed_at - f.started_at))
                   filter (where f.status = 'completed' and f.started_at is not null
                           and f.completed_at is not null) as p50,
               percentile_cont(0.95) within group (
                   order by extract(epoch from f.completed_at - f.started_at))
                   filter (where f.status = 'completed' and f.started_at is not null
                           and f.completed_at is not null) as p95
        from finished f
    )
    select
        coalesce((select jsonb_object_agg(s.status, s.n) from (
            select j.status, count(*) as n from jobs j
            where j.created_at >= v_since group by j.status) s), '{}'::jsonb),
        coalesce((select jsonb_agg(jsonb_build_object(
                    'hour', h.hour, 'completed', coalesce(p.completed, 0),
                    'failed', coalesce(p.failed, 0)) order by h.hour)
                  from hours h left join per_hour p on p.hour = h.hour), '[]'::jsonb),
        t.completed,
        t.failed,
        case when t.completed + t.failed = 0 then null
             else round(100.0 * t.failed / (t.completed + t.failed), 2)::float8 end,
        t.p50::float8,
        t.p95::float8,
        (select count(*) from job_results r
          where r.status = 'submitting'
            and r.updated_at < now() - make_interval(secs => p_submitting_seconds)),
        (select count(*) from jobs j where j.status = 'complete')
    from totals t;
end;
$$;

