-- dbops dlq: job status lookup for DLQ messages, and `dlq monitor` alert state.

-- Current status of the jobs named in queue messages (what producers put in `job_id`).
-- Entries that are not UUIDs, or that name no job, simply do not match: this function never
-- raises on bad ids. job_id is returned as given (callers match case-insensitively);
-- legacy 'complete' is reported as 'completed'. plpgsql so that installing it does not need
-- the `jobs` table to exist (the body is only checked when called).
create or replace function dbops_jobs_status_lookup(p_job_ids text[])
returns table (job_id text, status text)
language plpgsql stable as $$
#variable_conflict use_column
begin
    return query
    with given as (
        select distinct btrim(x) as raw
        from unnest(coalesce(p_job_ids, '{}'::text[])) as x
        where x is not null
    ),
    ids as (
        select g.raw,
               case
                   when g.raw ~* '^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$'
                   then g.raw::uuid
               end as id
        from given g
    )
    select i.raw::text,
           (case when j.status = 'complete' then 'completed' else j.status end)::text
    from ids i
    join public.jobs j on j.id = i.id
    where i.id is not null;
end;
$$;

-- Alert state per queue for `dlq monitor --notify`: alert again only when the depth grows
-- beyond the depth of the last alert; reset when the depth drops below the threshold.
create table if not exists dbops_dlq_monitor_state (
    queue text primary key,
    last_depth int not null,
    last_checked_at timestamptz not null default now(),
    last_alert_depth int,
    last_alert_at timestamptz,
    alerts_sent int not null default 0
);

create or replace function dbops_dlq_monitor_get(p_queue text)
returns table (
    queue text, last_depth int, last_checked_at timestamptz, last_alert_depth int,
    last_alert_at timestamptz, alerts_sent int
)
language sql stable as $$
    select s.queue, s.last_depth, s.last_checked_at, s.last_alert_depth, s.last_alert_at,
           s.alerts_sent
    from dbops_dlq_monitor_state s
    where s.queue = p_queue
$$;

-- Record one check. p_alerting: depth >= threshold; p_notified: an alert was delivered.
create or replace function dbops_dlq_monitor_record(
    p_queue text, p_depth int, p_alerting boolean, p_notified boolean
)
returns table (
    queue text, last_depth int, last_checked_at timestamptz, last_alert_depth int,
    last_alert_at timestamptz, alerts_sent int
)
language plpgsql volatile as $$
#variable_conflict use_column
begin
    if p_queue is null or p_depth is null or p_depth < 0 then
        raise exception 'invalid monitor record for queue %: depth must be >= 0', p_queue
            using errcode = '22023';
    end if;
    return query
    insert into dbops_dlq_monitor_state as s
        (queue, last_depth, last_checked_at, last_alert_depth, last_alert_at, alerts_sent)
    values (
        p_queue, p_depth, now(),
        case when p_notified then p_depth end,
        case when p_notified then now() end,
        case when p_notified then 1 else 0 end
    )
    on conflict (queue) do update set
        last_depth = excluded.last_depth,
        last_checked_at = excluded.last_checked_at,
        last_alert_depth = case
            when p_notified then p_depth
            when not p_alerting then null
            else s.last_alert_depth
        end,
        last_alert_at = case
            when p_notified then now()
            when not p_alerting then null
            else s.last_alert_at
        end,
        alerts_sent = s.alerts_sent + (case when p_notified then 1 else 0 end)
    returning s.queue, s.last_depth, s.last_checked_at, s.last_alert_depth, s.last_alert_at,
              s.alerts_sent;
end;
$$;
