-- `dbops demo`: one row summarising what is wrong with the job backend.
-- plpgsql so that installing it never depends on the application tables existing yet.

create or replace function dbops_demo_summary(
    p_stale_seconds int default 600,
    p_dead_worker_seconds int default 120,
    p_orphan_seconds int default 1800,
    p_submitting_seconds int default 900,
    p_rate_window_seconds int default 60
) returns table (
    jobs_total bigint,
    stale_jobs bigint,
    dead_workers_holding_jobs bigint,
    live_workers bigint,
    orphaned_pending_jobs bigint,
    results_stuck_submitting bigint,
    legacy_complete_jobs bigint,
    top_identifier text,
    top_endpoint text,
    top_requests bigint
)
language plpgsql stable as $$
#variable_conflict use_column
begin
    if p_stale_seconds is null or p_stale_seconds <= 0
        or p_dead_worker_seconds is null or p_dead_worker_seconds <= 0
        or p_orphan_seconds is null or p_orphan_seconds <= 0
        or p_submitting_seconds is null or p_submitting_seconds <= 0
        or p_rate_window_seconds is null or p_rate_window_seconds <= 0 then
        raise exception 'durations must be positive numbers of seconds' using errcode = '22023';
    end if;
    return query
    with top as (
        select r.identifier, r.endpoint, count(*) as requests
        from rate_limit_requests r
        where r.created_at >= now() - make_interval(secs => p_rate_window_seconds)
        group by r.identifier, r.endpoint
        order by count(*) desc, r.identifier, r.endpoint
        limit 1
    )
    select
        (select count(*) from jobs),
        -- stale: in progress, and neither the row nor a worker holding it shows life
        (select count(*)
           from jobs j
           left join lateral (
               select max(w.last_heartbeat) as beat
               from worker_heartbeats w
               where w.current_job_id = j.id
           ) h on true
          where j.status = 'in_progress'
            and greatest(j.updated_at, h.beat)
                < now() - make_interval(secs => p_stale_seconds)),
        (select count(*)
           from worker_heartbeats w
          where w.current_job_id is not null
            and w.last_heartbeat < now() - make_interval(secs => p_dead_worker_seconds)),
        (select count(*)
           from worker_heartbeats w
          where w.last_heartbeat >= now() - make_interval(secs => p_dead_worker_seconds)),
        -- orphaned: pending for a while and never claimed for the queue
        (select count(*)
           from jobs j
          where j.status = 'pending'
            and j.created_at < now() - make_interval(secs => p_orphan_seconds)
            and not exists (
                select 1 from queue_history q
                where q.job_id = j.id and q.event = 'queue_claimed'
            )),
        (select count(*)
           from job_results r
          where r.status = 'submitting'
            and r.updated_at < now() - make_interval(secs => p_submitting_seconds)),
        (select count(*) from jobs where status = 'complete'),
        (select t.identifier from top t),
        (select t.endpoint from top t),
        (select t.requests from top t);
end;
$$;
