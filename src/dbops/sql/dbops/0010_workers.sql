-- dbops workers: list, show and forget the rows of worker_heartbeats (docs/workers.md).
--
-- Alive = a heartbeat within the dead-after threshold (default 2 minutes), the same rule
-- as the stale-job logic in 0002_jobs.sql (`last_heartbeat >= now() - dead_after`).
-- queue_name is optional in the application schema (dbops db check), so it is read from
-- the row's JSON; jobs.started_at too. Durations are integer seconds. Bad input raises
-- 22023 (exit 2), an unknown worker P0002 (exit 4).

create or replace function dbops_workers_check(p_dead_after_seconds int, p_limit int)
returns void
language plpgsql immutable as $$
begin
    if p_dead_after_seconds is null or p_dead_after_seconds <= 0 then
        raise exception 'dead after must be a positive number of seconds, got %',
            p_dead_after_seconds using errcode = '22023';
    end if;
    if p_limit is null or p_limit <= 0 then
        raise exception 'limit must be positive, got %', p_limit using errcode = '22023';
    end if;
end;
$$;

-- Every worker (oldest heartbeat first, so the dead ones lead), with its current job.
create or replace function dbops_workers_list(
    p_dead_after_seconds int default 120,
    p_queue text default null,
    p_dead_only boolean default false,
    p_worker_id uuid default null,
    p_limit int default 1000
) returns table (
    worker_id uuid, queue text, status text, last_heartbeat timestamptz,
    age_seconds double precision, alive boolean, current_job_id uuid,
    current_job_status text, current_job_age_seconds double precision
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz;
begin
    perform dbops_workers_check(p_dead_after_seconds, p_limit);
    v_cutoff := now() - make_interval(secs => p_dead_after_seconds);
    return query
    select w.worker_id,
           w.doc->>'queue_name',
           w.status::text,
           w.last_heartbeat::timestamptz,
           extract(epoch from now() - w.last_heartbeat)::float8,
           coalesce(w.last_heartbeat >= v_cutoff, false),
           w.current_job_id,
           j.status::text,
           extract(epoch from now() - coalesce(
               (to_jsonb(j)->>'started_at')::timestamptz, j.created_at))::float8
    from (select h.worker_id, h.status, h.last_heartbeat, h.current_job_id, to_jsonb(h) as doc
          from worker_heartbeats h
          where (p_worker_id is null or h.worker_id = p_worker_id)
            and (not coalesce(p_dead_only, false)
                 or h.last_heartbeat is null or h.last_heartbeat < v_cutoff)) w
    left join jobs j on j.id = w.current_job_id
    where p_queue is null or w.doc->>'queue_name' = p_queue
    order by w.last_heartbeat nulls first, w.worker_id
    limit p_limit;
end;
$$;

-- One worker: its list row, the jobs it holds (its current job, and in-progress jobs whose
-- latest history event names it) and its latest history events.
create or replace function dbops_workers_show(
    p_worker_id uuid,
    p_dead_after_seconds int default 120,
    p_history_limit int default 20
) returns table (worker jsonb, jobs jsonb, history jsonb)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_worker jsonb;
begin
    select to_jsonb(l) into v_worker
    from dbops_workers_list(p_dead_after_seconds, null, false, p_worker_id, 1) l;
    if v_worker is null then
        raise exception 'not found: worker %', p_worker_id using errcode = 'P0002';
    end if;
    return query
    select
        v_worker,
        coalesce((select jsonb_agg(jsonb_build_object(
                    'id', j.id, 'status', j.status, 'updated_at', j.updated_at,
                    'age_seconds', extract(epoch from now() - coalesce(
                        (to_jsonb(j)->>'started_at')::timestamptz, j.created_at))::float8,
                    'current', j.id is not distinct from (v_worker->>'current_job_id')::uuid)
                    order by j.updated_at desc, j.id)
                  from jobs j
                  where j.id = (v_worker->>'current_job_id')::uuid
                     or (j.status = 'in_progress' and (
                         select q.worker_id from queue_history q where q.job_id = j.id
                         order by q.created_at desc, q.id::text desc limit 1) = p_worker_id)),
                 '[]'::jsonb),
        coalesce((select jsonb_agg(jsonb_build_object(
                    'id', h.doc->'id',
                    'job_id', h.doc->'job_id',
                    'event', dbops_history_event(h.doc),
                    'details', coalesce(h.doc->'details', '{}'::jsonb),
                    'created_at', h.created_at)
                    order by h.created_at desc, h.ord)
                  from (select to_jsonb(q) as doc, q.created_at,
                               row_number() over (order by q.created_at desc, q.id::text desc)
                                   as ord
                        from queue_history q where q.worker_id = p_worker_id
                        order by q.created_at desc, q.id::text desc
                        limit greatest(coalesce(p_history_limit, 20), 0)) h), '[]'::jsonb);
end;
$$;

-- Remove a dead worker's row. The delete re-checks liveness on the row it locks: a worker
-- that beat since the caller's preview (even while this waits for its row lock) is kept.
-- outcome: 'forgotten' (deleted), 'alive' (kept: it beat within the threshold) or
-- 'not_found'; the other columns describe the row as it was (null when not found).
create or replace function dbops_workers_forget(
    p_worker_id uuid,
    p_dead_after_seconds int default 120
) returns table (
    outcome text, worker_id uuid, queue text, status text, last_heartbeat timestamptz,
    age_seconds double precision, current_job_id uuid
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_doc jsonb;
    v_outcome text := 'forgotten';
begin
    perform dbops_workers_check(p_dead_after_seconds, 1);
    delete from worker_heartbeats w
    where w.worker_id = p_worker_id
      and w.last_heartbeat < now() - make_interval(secs => p_dead_after_seconds)
    returning to_jsonb(w) into v_doc;
    if v_doc is null then
        select to_jsonb(w) into v_doc from worker_heartbeats w where w.worker_id = p_worker_id;
        v_outcome := case when v_doc is null then 'not_found' else 'alive' end;
    end if;
    return query
    select v_outcome,
           coalesce((v_doc->>'worker_id')::uuid, p_worker_id),
           v_doc->>'queue_name',
           v_doc->>'status',
           (v_doc->>'last_heartbeat')::timestamptz,
           extract(epoch from now() - (v_doc->>'last_heartbeat')::timestamptz)::float8,
           (v_doc->>'current_job_id')::uuid;
end;
$$;
