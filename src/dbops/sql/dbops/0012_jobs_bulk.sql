-- dbops jobs: bulk actions by filter (`jobs retry` and `jobs fail` with --status, --customer,
-- --error-like, --since, --until, --limit; docs/jobs.md "Bulk actions by filter").
--
-- The filter is evaluated once, by the preview (dbops_jobs_match); the action then runs on
-- the previewed ids in chunks, one database call per chunk, each job's status re-checked
-- under its row lock against the status the preview showed (`skipped_changed`), through
-- the functions of 0002 (the outbox path of `jobs requeue`, the checks of `jobs fail`).
-- Jobs deleted after the preview are skipped instead of failing the chunk with P0002.
-- Works on both application schema variants: customer_id is compared as text, and a
-- status is checked against the jobs table's own status check constraint.

-- Jobs a bulk action may act on, oldest change first, with their sign of life (the rows
-- of dbops_jobs_get). p_action: 'retry' (failed jobs) or 'fail' (pending and in_progress
-- jobs). --since/--until are on updated_at (the last state change: for a failed job, when
-- it failed). 22023 for an empty filter, an empty value, a status the jobs check
-- constraint does not allow or the action does not act on, a bad window or limit.
create or replace function dbops_jobs_match(
    p_action text,
    p_status text default null,
    p_customer text default null,
    p_error_like text default null,
    p_since_seconds int default null,
    p_until_seconds int default null,
    p_limit int default 1000,
    p_dead_after_seconds int default 120
) returns table (
    id uuid, customer_id text, status text, priority_level int, created_at timestamptz,
    updated_at timestamptz, last_activity_at timestamptz, worker_id uuid,
    worker_alive boolean, recoveries int, unsent boolean, error_message text
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_acts text[] := case p_action when 'retry' then array['failed']
                                   when 'fail' then array['pending', 'in_progress'] end;
    v_allowed text[];
    v_ids jsonb;
begin
    perform dbops_require(v_acts is not null, 'action must be retry or fail');
    perform dbops_require(
        num_nulls(p_status, p_customer, p_error_like, p_since_seconds, p_until_seconds) < 5,
        'give job ids or at least one filter (--status, --customer, --error-like, --since, --until)');
    if trim(p_status) = '' or trim(p_customer) = '' or trim(p_error_like) = '' then
        raise exception 'a filter value must not be empty' using errcode = '22023';
    end if;
    if p_status is not null then
        select s.status_values into v_allowed from dbops_app_status_values() s;
        if v_allowed is not null and not p_status = any (v_allowed) then
            raise exception '%', format('invalid --status %L: the jobs table''s status check allows only %s',
                p_status, array_to_string(v_allowed, ', ')) using errcode = '22023';
        end if;
        if not p_status = any (v_acts) then
            raise exception '%', format('invalid --status %L: jobs %s acts on %s jobs only%s',
                p_status, p_action, array_to_string(v_acts, ' or '),
                case when p_action = 'retry' then ' (`dbops jobs requeue` re-queues pending ones)'
                     else '' end) using errcode = '22023';
        end if;
    end if;
    -- (an absent --since or --until passes these two)
    perform dbops_require(
        coalesce(p_since_seconds > 0, true) and coalesce(p_until_seconds > 0, true),
        'durations must be positive numbers of seconds');
    perform dbops_require(coalesce(p_since_seconds > p_until_seconds, true),
                          'empty window: --since must reach further back than --until');
    perform dbops_require(p_limit between 1 and 100001, 'limit must be 1 to 100000');
    -- dbops_jobs_get a thousand ids at a time (its cost grows with the square of its ids).
    for v_ids in
        select jsonb_agg(m.id order by m.n)
        from (select s.id, row_number() over (order by s.updated_at, s.id) as n
              from (select j.id, j.updated_at from jobs j
                    where j.status = any (case when p_status is null then v_acts
                                               else array[p_status] end)
                      and (p_customer is null or j.customer_id::text = p_customer)
                      and (p_error_like is null
                           or strpos(lower(coalesce(j.error_message, '')),
                                     lower(p_error_like)) > 0)
                      and (p_since_seconds is null
                           or j.updated_at >= now() - make_interval(secs => p_since_seconds))
                      and (p_until_seconds is null
                           or j.updated_at < now() - make_interval(secs => p_until_seconds))
                    order by j.updated_at, j.id
                    limit p_limit) s) m
        group by (m.n - 1) / 1000
        order by min(m.n)
    loop
        return query
        select g.* from dbops_jobs_get(v_ids, p_dead_after_seconds) g
        order by g.updated_at, g.id;
    end loop;
end;
$$;

-- The ids of p_job_ids (a JSON array of UUIDs) whose job still exists, as a JSON array.
create or replace function dbops_jobs_known(p_job_ids jsonb) returns jsonb
language plpgsql stable as $$
begin
    perform dbops_jobs_ids_array(p_job_ids);
    return (select coalesce(jsonb_agg(x), '[]'::jsonb)
            from jsonb_array_elements_text(p_job_ids) x
            where exists (select 1 from jobs j where j.id = x::uuid));
end;
$$;

-- One chunk of `jobs retry`, one database round trip: first record the SQS sends of the
-- run's previous chunk (what dbops_jobs_outbox_mark records; `rejected` counts sends of
-- rows the run no longer held), then re-queue these jobs through dbops_jobs_requeue
-- (kind manual, an outbox row leased to the run, each job re-checked under its row lock
-- against p_expected: the caller passes only jobs previewed as failed, expecting failed).
drop function if exists dbops_jobs_retry(jsonb, text, text, int, jsonb, text, jsonb, jsonb);
create or replace function dbops_jobs_retry(
    p_job_ids jsonb,
    p_operator text,
    p_lease_owner text,
    p_lease_seconds int default 300,
    p_expected jsonb default null,
    p_queue_url text default null,
    p_sent jsonb default '[]'::jsonb,
    p_failed jsonb default '[]'::jsonb
) returns table (
    job_id uuid, previous_status text, action text, outbox_id bigint, attempt int,
    operator text, requeued_at timestamptz, customer_id text, package_size int,
    priority_level int, created_at timestamptz, metadata jsonb, reason text, rejected bigint
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_rejected bigint := 0;
    v_known jsonb;
begin
    v_known := dbops_jobs_known(p_job_ids);
    if jsonb_array_length(coalesce(p_sent, '[]')) + jsonb_array_length(coalesce(p_failed, '[]')) > 0
    then
        select m.rejected into v_rejected
        from dbops_jobs_outbox_mark(p_lease_owner, p_queue_url, p_sent, p_failed) m;
    end if;
    return query
    select r.*, v_rejected
    from dbops_jobs_requeue(v_known, p_operator, p_lease_owner, p_lease_seconds, 'manual',
                            null, p_expected, false) r
    union all
    select x::uuid, null, 'skipped', null, null, null, null, null, null, null, null, null,
           'skipped_changed: the job was deleted after the preview', v_rejected
    from jsonb_array_elements_text(p_job_ids) x
    where not v_known ? x;
end;
$$;

-- One chunk of `jobs fail` by filter: dbops_jobs_fail on the jobs that still exist, the
-- others skipped.
create or replace function dbops_jobs_fail_bulk(
    -- dbops_jobs_fail's arguments and rows
    p_job_ids jsonb, p_reason text, p_operator text, p_dead_after_seconds int default 120,
    p_expected jsonb default null
) returns table (job_id uuid, previous_status text, status text, changed boolean, reason text)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_known jsonb;
begin
    v_known := dbops_jobs_known(p_job_ids);
    return query
    select f.* from dbops_jobs_fail(v_known, p_reason, p_operator, p_dead_after_seconds,
                                    p_expected) f
    union all
    select x::uuid, 'deleted', 'deleted', false,
           'skipped_changed: the job was deleted after the preview'
    from jsonb_array_elements_text(p_job_ids) x
    where not v_known ? x;
end;
$$;
