-- dbops jobs, the write side: claim stale jobs, re-queue and fail chosen jobs, and the
-- recovery outbox operations (take, mark, renew, release). The tables, the shared helpers
-- and the read functions are in 0002_jobs.sql (its definitions and schema notes apply here).
-- Split out of 0002 (which kept the same functions until then): on an existing install this
-- file applies after 0009, which is fine since nothing before it calls these functions when
-- it is created (plpgsql bodies are late-bound; only 0002's tables and helpers are needed).
-- Bad input raises 22023 (exit 2), unknown ids P0002 (exit 4).
-- --------------------------------------------------------------------------- helpers
-- 22023 unless both the operator and the lease owner (the run id) are given.
create or replace function dbops_jobs_require_owner(p_operator text, p_lease_owner text)
returns void language plpgsql immutable as $$
begin
    if coalesce(p_operator, '') = '' or coalesce(p_lease_owner, '') = '' then
        raise exception 'operator and lease owner are required' using errcode = '22023';
    end if;
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
    outbox_id bigint, job_id uuid, action text, attempt int, operator text, requeued_at timestamptz,
    customer_id text, package_size int, priority_level int, created_at timestamptz, metadata jsonb,
    last_activity_at timestamptz, worker_id uuid
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
    perform dbops_jobs_require_owner(p_operator, p_lease_owner);
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
    job_id uuid, previous_status text, action text,
    outbox_id bigint, attempt int, operator text, requeued_at timestamptz,
    customer_id text, package_size int, priority_level int, created_at timestamptz, metadata jsonb,
    reason text
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
    perform dbops_jobs_require_owner(p_operator, p_lease_owner);
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
-- The rows are found by primary key (`id = any`) and their message ids looked up in a JSON
-- object: a join against jsonb_to_recordset turned quadratic (a nested loop re-reading the
-- JSON per row) when dbops_job_recoveries had not been analysed since it grew (1.5 s for
-- one chunk of 2,000 sends instead of 0.1 s).
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
    v_ids bigint[];
    v_messages jsonb;
begin
    select coalesce(array_agg((e->>'id')::bigint), '{}'),
           coalesce(jsonb_object_agg(e->>'id', e->'message_id'), '{}'::jsonb)
      into v_ids, v_messages
    from jsonb_array_elements(coalesce(p_sent, '[]'::jsonb)) e;
    with done as (
        update dbops_job_recoveries r set state = 'sent',
            message_id = v_messages->>(r.id::text),
            queue_url = p_queue_url, sent_at = now(), lease_owner = null,
            sending_until = null, last_error = null
        where r.id = any (v_ids) and r.state = 'pending_send' and r.lease_owner = p_lease_owner
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
    select coalesce(array_agg((e->>'id')::bigint), '{}'),
           coalesce(jsonb_object_agg(e->>'id', e->'error'), '{}'::jsonb)
      into v_ids, v_messages
    from jsonb_array_elements(coalesce(p_failed, '[]'::jsonb)) e;
    update dbops_job_recoveries r set last_error = left(v_messages->>(r.id::text), 500)
    where r.id = any (v_ids) and r.state = 'pending_send' and r.lease_owner = p_lease_owner;
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
