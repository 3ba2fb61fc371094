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
    id uuid, customer_id text, status text, priority_level int, created_at timestamptz,
    updated_at timestamptz, last_activity_at timestamptz, worker_id uuid,
    worker_alive boolean, recoveries int, unsent boolean, error_message text
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
                    -- legacy rows carry status_from/status_to instead of an event
                    'id', h.doc->'id',
                    'event', coalesce(h.doc->>'event',
                        nullif(concat_ws(' -> ', coalesce(h.doc->>'status_from', '?'),
                                         h.doc->>'status_to'), '?'),
                        'unknown'),
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

-- --------------------------------------------------------------------------- claim
-- Claim stale jobs in one statement: lock them (SKIP LOCKED, so concurrent runs split the
-- work), re-checking inside the locked statement that neither the row nor a worker holding
-- it shows life since the cutoff; those under the cap go back to pending with an outbox row
-- (leased to the caller), those at the cap become failed and say why; each gets an event.
create or replace function dbops_jobs_claim_stale(
    p_older_than_seconds int,
    p_limit int,
    p_max_recoveries int,
    p_operator text,
    p_lease_owner text,
    p_lease_seconds int default 300,
    p_min_older_than_seconds int default 120
) returns table (
    outbox_id bigint, job_id uuid, action text, attempt int, operator text,
    requeued_at timestamptz, customer_id text, package_size int, priority_level int,
    created_at timestamptz, metadata jsonb, last_activity_at timestamptz, worker_id uuid
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz;
begin
    if p_older_than_seconds is null
        or p_older_than_seconds < greatest(coalesce(p_min_older_than_seconds, 120), 120) then
        raise exception 'older than must be at least % seconds (a worker is dead only after 2 minutes without a heartbeat), got %',
            greatest(coalesce(p_min_older_than_seconds, 120), 120), p_older_than_seconds
            using errcode = '22023';
    end if;
    if p_limit is null or p_limit < 1 then
        raise exception 'limit must be at least 1' using errcode = '22023';
    end if;
    if p_max_recoveries is null or p_max_recoveries < 0 then
        raise exception 'max recoveries must be 0 or more' using errcode = '22023';
    end if;
    if coalesce(p_operator, '') = '' or coalesce(p_lease_owner, '') = '' then
        raise exception 'operator and lease owner are required' using errcode = '22023';
    end if;
    v_cutoff := now() - make_interval(secs => p_older_than_seconds);
    return query
    with locked as (
        select j.id, j.customer_id::text as customer_id,
               (to_jsonb(j)->>'package_size')::int as package_size,
               (to_jsonb(j)->>'priority_level')::int as priority_level, j.created_at,
               coalesce(to_jsonb(j)->'metadata', '{}'::jsonb) as metadata, j.updated_at, j.status
        from jobs j
        where j.status = 'in_progress'
          and j.updated_at < v_cutoff
          and not exists (
              select 1 from worker_heartbeats h
              where h.current_job_id = j.id and h.last_heartbeat >= v_cutoff)
        order by j.updated_at
        limit p_limit
        for update of j skip locked
    ), decided as (
        select l.*, w.worker_id, greatest(l.updated_at, w.last_heartbeat) as activity,
               n.recoveries, n.recoveries < p_max_recoveries as requeue
        from locked l
        left join lateral (
            select h.worker_id, h.last_heartbeat from worker_heartbeats h
            where h.current_job_id = l.id order by h.last_heartbeat desc limit 1
        ) w on true
        cross join lateral (
            select count(*)::int as recoveries from dbops_job_recoveries r
            where r.job_id = l.id and r.action = 'requeued'
        ) n
    ), moved as (
        update jobs j set
            status = case when d.requeue then 'pending' else 'failed' end,
            updated_at = now(),
            error_message = case when d.requeue then j.error_message else format(
                'dbops: recovery cap reached (re-queued %s time(s), max %s); no sign of life since %s; abandoned by %s',
                d.recoveries, p_max_recoveries, dbops_jobs_iso(d.activity), p_operator) end
        from decided d
        where j.id = d.id
        returning j.id
    ), outbox as (
        insert into dbops_job_recoveries (
            job_id, kind, action, attempt, operator, state, previous_status,
            last_activity_at, worker_id, lease_owner, sending_until)
        select d.id, 'stale',
               case when d.requeue then 'requeued' else 'abandoned' end,
               case when d.requeue then d.recoveries + 1 else d.recoveries end,
               p_operator,
               case when d.requeue then 'pending_send' else 'not_applicable' end,
               d.status, d.activity, d.worker_id,
               case when d.requeue then p_lease_owner end,
               case when d.requeue then now() + make_interval(secs => p_lease_seconds) end
        from decided d
        returning dbops_job_recoveries.*
    ), events as (
        insert into queue_history (job_id, event, details, worker_id)
        select o.job_id,
               case when o.action = 'requeued' then 'requeued_stale' else 'abandoned_stale' end,
               jsonb_build_object(
                   'operator', p_operator, 'source', 'dbops', 'recovery_id', o.id,
                   'attempt', o.attempt, 'max_recoveries', p_max_recoveries),
               o.worker_id
        from outbox o
        returning 1
    )
    select o.id, o.job_id, o.action, o.attempt, o.operator, o.created_at, d.customer_id,
           d.package_size, d.priority_level, d.created_at, d.metadata, o.last_activity_at,
           o.worker_id
    from outbox o join decided d on d.id = o.job_id;
end;
$$;

-- Re-queue chosen pending/failed jobs (`jobs requeue ID...`), or orphans re-checked under
-- the lock (`jobs requeue --orphans`): same outbox path as the stale recovery.
drop function if exists dbops_jobs_requeue(jsonb, text, text, int, text, int);
create or replace function dbops_jobs_requeue(
    p_job_ids jsonb,
    p_operator text,
    p_lease_owner text,
    p_lease_seconds int default 300,
    p_kind text default 'manual',
    p_orphan_older_than_seconds int default null,
    p_expected jsonb default null,
    p_force boolean default false
) returns table (
    job_id uuid, previous_status text, action text, outbox_id bigint, attempt int,
    operator text, requeued_at timestamptz, customer_id text, package_size int,
    priority_level int, created_at timestamptz, metadata jsonb, reason text
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_ids uuid[];
    v_cutoff timestamptz;
begin
    perform dbops_jobs_ids_array(p_job_ids);
    if p_kind not in ('manual', 'orphan') then
        raise exception 'kind must be manual or orphan' using errcode = '22023';
    end if;
    if p_kind = 'orphan' and coalesce(p_orphan_older_than_seconds, 0) <= 0 then
        raise exception 'orphan re-queue needs older than seconds' using errcode = '22023';
    end if;
    if coalesce(p_operator, '') = '' or coalesce(p_lease_owner, '') = '' then
        raise exception 'operator and lease owner are required' using errcode = '22023';
    end if;
    v_ids := dbops_jobs_ids(p_job_ids);
    v_cutoff := now() - make_interval(secs => coalesce(p_orphan_older_than_seconds, 0));
    return query
    with locked as (
        select j.id, j.customer_id::text as customer_id,
               (to_jsonb(j)->>'package_size')::int as package_size,
               (to_jsonb(j)->>'priority_level')::int as priority_level, j.created_at,
               coalesce(to_jsonb(j)->'metadata', '{}'::jsonb) as metadata, j.updated_at,
               j.status, j.error_message
        from jobs j
        where j.id = any (v_ids)
        order by j.id
        for update of j
    ), judged as (
        select l.*, n.recoveries,
               coalesce(dbops_jobs_changed(p_expected, l.id, l.status), case
                   when l.status not in ('pending', 'failed') then
                       format('status is %s (only pending or failed jobs are re-queued; use `dbops jobs recover` for stale ones)', l.status)
                   when exists (select 1 from dbops_job_recoveries r
                                 where r.job_id = l.id and r.state = 'pending_send') then
                       'already waiting in the dbops outbox: run `dbops jobs recover` to send it'
                   when l.status = 'pending' and not coalesce(p_force, false) and exists (
                        select 1 from dbops_job_recoveries r
                         where r.job_id = l.id and r.action = 'requeued' and r.state = 'sent'
                           and r.created_at >= l.updated_at) then
                       'skipped_enqueued: dbops already enqueued it since its last state change (--force sends it again)'
                   when p_kind = 'orphan' and (
                        l.status <> 'pending' or l.updated_at >= v_cutoff
                        or exists (select 1 from queue_history h
                                    where h.job_id = l.id and h.event = 'queue_claimed'
                                      and h.created_at >= l.updated_at)
                        or exists (select 1 from dbops_job_recoveries r
                                    where r.job_id = l.id and r.action = 'requeued'
                                      and r.created_at >= l.updated_at)) then
                       'no longer an orphan'
               end) as skip_reason
        from locked l
        cross join lateral (
            select count(*)::int as recoveries from dbops_job_recoveries r
            where r.job_id = l.id and r.action = 'requeued'
        ) n
    ), moved as (
        update jobs j set status = 'pending', updated_at = now(), error_message = null,
                          completed_at = null
        from judged d
        where j.id = d.id and d.skip_reason is null
        returning j.id
    ), outbox as (
        insert into dbops_job_recoveries (
            job_id, kind, action, attempt, operator, state, previous_status,
            last_activity_at, lease_owner, sending_until)
        select d.id, p_kind, 'requeued', d.recoveries + 1, p_operator, 'pending_send',
               d.status, d.updated_at,
               p_lease_owner, now() + make_interval(secs => p_lease_seconds)
        from judged d
        where d.skip_reason is null
        order by d.id
        returning dbops_job_recoveries.*
    ), events as (
        insert into queue_history (job_id, event, details)
        select o.job_id, 'requeued_' || p_kind,
               jsonb_build_object('operator', p_operator, 'source', 'dbops',
                   'recovery_id', o.id, 'attempt', o.attempt,
                   'previous_status', o.previous_status,
                   'previous_error', d.error_message)
        from outbox o join judged d on d.id = o.job_id
        returning 1
    )
    select d.id, d.status,
           case when d.skip_reason is null then 'requeued' else 'skipped' end,
           o.id, o.attempt, o.operator, o.created_at, d.customer_id, d.package_size,
           d.priority_level, d.created_at, d.metadata, d.skip_reason
    from judged d left join outbox o on o.job_id = d.id
    order by array_position(v_ids, d.id);
end;
$$;

-- Fail chosen jobs with a reason. Jobs whose last sign of life is fresh are skipped.
drop function if exists dbops_jobs_fail(jsonb, text, text, int);
create or replace function dbops_jobs_fail(
    p_job_ids jsonb,
    p_reason text,
    p_operator text,
    p_dead_after_seconds int default 120,
    p_expected jsonb default null
) returns table (
    job_id uuid, previous_status text, status text, changed boolean, reason text
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_ids uuid[];
begin
    perform dbops_jobs_ids_array(p_job_ids);
    if coalesce(trim(p_reason), '') = '' then
        raise exception 'a reason is required' using errcode = '22023';
    end if;
    v_ids := dbops_jobs_ids(p_job_ids);
    return query
    with locked as (
        select j.id, j.status, j.updated_at from jobs j
        where j.id = any (v_ids) order by j.id for update of j
    ), judged as (
        select l.*, greatest(l.updated_at, w.beat) as activity,
               coalesce(dbops_jobs_changed(p_expected, l.id, l.status), case
                   when l.status not in ('pending', 'in_progress') then
                       format('status is %s (only pending or in_progress jobs are failed)', l.status)
                   when l.status = 'in_progress' and greatest(l.updated_at, w.beat)
                        >= now() - make_interval(secs => p_dead_after_seconds) then
                       format('last sign of life %s s ago: a worker may still run it; stop the worker first',
                              round(extract(epoch from now() - greatest(l.updated_at, w.beat))))
               end) as skip_reason
        from locked l
        left join lateral (
            select max(h.last_heartbeat) as beat from worker_heartbeats h
            where h.current_job_id = l.id
        ) w on true
    ), moved as (
        update jobs j set status = 'failed', updated_at = now(),
            error_message = format('dbops: failed by %s: %s', p_operator, p_reason)
        from judged d
        where j.id = d.id and d.skip_reason is null
        returning j.id
    ), events as (
        insert into queue_history (job_id, event, details)
        select d.id, 'failed_by_operator',
               jsonb_build_object('operator', p_operator, 'source', 'dbops',
                                  'reason', p_reason, 'previous_status', d.status)
        from judged d where d.skip_reason is null
        returning 1
    )
    select d.id, d.status,
           case when d.skip_reason is null then 'failed' else d.status end,
           d.skip_reason is null, d.skip_reason
    from judged d
    order by array_position(v_ids, d.id);
end;
$$;

-- --------------------------------------------------------------------------- outbox ops
-- Unsent outbox rows, per active lease owner (null = free to take).
create or replace function dbops_jobs_outbox_unsent()
returns table (lease_owner text, unsent bigint, leased_until timestamptz, oldest_at timestamptz)
language sql stable as $$
    select case when r.sending_until > now() and not dbops_jobs_run_dead(r.lease_owner)
                then r.lease_owner end,
           count(*),
           max(r.sending_until) filter (
               where r.sending_until > now() and not dbops_jobs_run_dead(r.lease_owner)),
           min(r.created_at)
    from dbops_job_recoveries r
    where r.state = 'pending_send'
    group by 1
    order by 1 nulls first
$$;

-- Take unsent rows (oldest first) and lease them to the caller: rows whose lease expired,
-- whose run is dead (dbops_job_runs), or whose owner the caller knows to be dead. Rows whose job is no longer pending are
-- marked skipped instead of being sent twice.
create or replace function dbops_jobs_outbox_take(
    p_lease_owner text,
    p_limit int,
    p_lease_seconds int default 300,
    p_takeover_owners jsonb default '[]'::jsonb
) returns table (
    outbox_id bigint, job_id uuid, kind text, attempt int, operator text,
    requeued_at timestamptz, customer_id text, package_size int, priority_level int,
    created_at timestamptz, metadata jsonb, taken boolean, note text
)
language plpgsql volatile as $$
#variable_conflict use_column
begin
    if coalesce(p_lease_owner, '') = '' or p_limit is null or p_limit < 1 then
        raise exception 'lease owner and a positive limit are required' using errcode = '22023';
    end if;
    return query
    with picked as (
        select r.id from dbops_job_recoveries r
        where r.state = 'pending_send'
          and (r.sending_until is null or r.sending_until < now()
               or dbops_jobs_run_dead(r.lease_owner)
               or r.lease_owner in (
                   select jsonb_array_elements_text(coalesce(p_takeover_owners, '[]'::jsonb))))
        order by r.id
        limit p_limit
        for update of r skip locked
    ), judged as (
        select p.id, j.status as job_status, j.customer_id::text as customer_id,
               (to_jsonb(j)->>'package_size')::int as package_size,
               (to_jsonb(j)->>'priority_level')::int as priority_level,
               j.created_at, coalesce(to_jsonb(j)->'metadata', '{}'::jsonb) as metadata
        from picked p
        join dbops_job_recoveries r on r.id = p.id
        left join jobs j on j.id = r.job_id
    ), skipped as (
        update dbops_job_recoveries r set state = 'skipped', lease_owner = null,
            sending_until = null,
            last_error = format('not sent: the job is %s now', coalesce(s.job_status, 'deleted'))
        from judged s
        where r.id = s.id and s.job_status is distinct from 'pending'
        returning r.id, r.job_id, r.kind, r.attempt, r.operator, r.created_at, r.last_error
    ), taken as (
        update dbops_job_recoveries r set lease_owner = p_lease_owner,
            sending_until = now() + make_interval(secs => p_lease_seconds),
            send_attempts = r.send_attempts + 1
        from judged s
        where r.id = s.id and s.job_status = 'pending'
        returning r.id, r.job_id, r.kind, r.attempt, r.operator, r.created_at
    )
    select t.id, t.job_id, t.kind, t.attempt, t.operator, t.created_at, s.customer_id,
           s.package_size, s.priority_level, s.created_at, s.metadata, true, null::text
    from taken t join judged s on s.id = t.id
    union all
    select k.id, k.job_id, k.kind, k.attempt, k.operator, k.created_at, null, null, null,
           null, null, false, k.last_error
    from skipped k
    order by 1;
end;
$$;

-- Record one SQS batch: sent entries get their MessageId (and an event), failed entries
-- keep their lease (so this run does not retry them) and the error. One call per batch.
-- Only rows the caller still holds are recorded: a run that stalled past its lease while
-- another run took its rows over gets them back as `rejected` (their messages may have
-- been sent twice: by the stalled run and by the one that took over; none is lost).
drop function if exists dbops_jobs_outbox_mark(text, text, jsonb, jsonb);
create or replace function dbops_jobs_outbox_mark(
    p_lease_owner text,
    p_queue_url text,
    p_sent jsonb,
    p_failed jsonb default '[]'::jsonb
) returns table (sent bigint, failed bigint, rejected bigint)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_sent bigint;
    v_failed bigint;
begin
    with done as (
        update dbops_job_recoveries r set state = 'sent', message_id = x.message_id,
            queue_url = p_queue_url, sent_at = now(), lease_owner = null,
            sending_until = null, last_error = null
        from jsonb_to_recordset(coalesce(p_sent, '[]'::jsonb)) as x(id bigint, message_id text)
        where r.id = x.id and r.state = 'pending_send' and r.lease_owner = p_lease_owner
        returning r.id, r.job_id, r.message_id, r.operator, r.kind
    ), events as (
        insert into queue_history (job_id, event, details)
        select d.job_id, 'requeue_sent',
               jsonb_build_object('operator', d.operator, 'source', 'dbops',
                                  'recovery_id', d.id, 'kind', d.kind,
                                  'message_id', d.message_id)
        from done d
        returning 1
    )
    select count(*) into v_sent from done;
    update dbops_job_recoveries r set last_error = left(x.error, 500)
    from jsonb_to_recordset(coalesce(p_failed, '[]'::jsonb)) as x(id bigint, error text)
    where r.id = x.id and r.state = 'pending_send' and r.lease_owner = p_lease_owner;
    get diagnostics v_failed = row_count;
    return query select v_sent, v_failed,
        coalesce(jsonb_array_length(p_sent), 0)::bigint - v_sent;
end;
$$;

-- Extend this owner's leases (long runs), or release them (end of a run, error, Ctrl-C).
create or replace function dbops_jobs_outbox_renew(p_lease_owner text, p_lease_seconds int)
returns table (renewed bigint)
language sql volatile as $$
    with run as (
        update dbops_job_runs set lease_until = now() + make_interval(secs => p_lease_seconds)
        where run_id = p_lease_owner and finished_at is null
        returning 1
    ), r as (
        update dbops_job_recoveries set sending_until = now() + make_interval(secs => p_lease_seconds)
        where lease_owner = p_lease_owner and state = 'pending_send'
        returning 1
    )
    select count(*) from r
$$;

create or replace function dbops_jobs_outbox_release(p_lease_owner text)
returns table (released bigint)
language sql volatile as $$
    with run as (
        update dbops_job_runs set finished_at = now()
        where run_id = p_lease_owner and finished_at is null
        returning session_lock
    ), unlocked as (
        select pg_advisory_unlock(1684828275, hashtext(p_lease_owner))
        from run where run.session_lock
          and exists (select 1 from pg_locks l
                      where l.locktype = 'advisory' and l.granted and l.objsubid = 2
                        and l.pid = pg_backend_pid() and l.classid = 1684828275::oid
                        and l.objid = (hashtext(p_lease_owner)::bigint & 4294967295)::oid)
    ), r as (
        update dbops_job_recoveries set sending_until = null, lease_owner = null
        where lease_owner = p_lease_owner and state = 'pending_send'
        returning 1
    )
    select (select count(*) from r) from (select count(*) from unlocked) u
$$;
