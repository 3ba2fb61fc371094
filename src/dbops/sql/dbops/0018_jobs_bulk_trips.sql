-- dbops jobs retry by filter in fewer round trips (issue 15, performance: at most one
-- database round trip per 1,000 jobs counting everything, docs/performance.md).
--
-- A run of `jobs retry` by filter is now: one preview call (dbops_jobs_retry_preview), one
-- dbops_jobs_retry_step per chunk (the first one also registers the run and takes what
-- earlier runs left unsent; each one records the previous chunk's SQS sends, then
-- re-queues its chunk, each job re-checked under its row lock), and one final
-- dbops_jobs_outbox_finish (record the last chunk's sends, release the run, read the
-- outbox state). The functions only compose those of 0002, 0008 and 0012, so the outbox
-- guarantees are unchanged: a send is recorded only after SQS accepted it; killed before
-- that record, the rows stay pending_send and the next run sends them again (at least
-- once, never lost). Works on both application schema variants (it reads jobs only
-- through the functions it composes).

-- The preview of `jobs retry` by filter in one round trip: the rows of dbops_jobs_match
-- ('retry', same arguments and checks), then always one more row, with id null, carrying
-- the outbox state (rows waiting unsent, and those leased to a live run: what
-- dbops_jobs_outbox_unsent sums).
create or replace function dbops_jobs_retry_preview(
    p_status text default null, p_customer text default null, p_error_like text default null,
    p_since_seconds int default null, p_until_seconds int default null,
    p_limit int default 1000, p_dead_after_seconds int default 120
) returns table (
    id uuid, customer_id text, status text, priority_level int, created_at timestamptz,
    updated_at timestamptz, last_activity_at timestamptz, worker_id uuid,
    worker_alive boolean, recoveries int, unsent boolean, error_message text,
    outbox_unsent bigint, outbox_leased_elsewhere bigint
)
language plpgsql stable as $$
begin
    return query
    select m.*, null::bigint, null::bigint
    from dbops_jobs_match('retry', p_status, p_customer, p_error_like, p_since_seconds,
                          p_until_seconds, p_limit, p_dead_after_seconds) m;
    return query
    select null::uuid, null::text, null::text, null::int, null::timestamptz,
           null::timestamptz, null::timestamptz, null::uuid, null::boolean, null::int,
           null::boolean, null::text,
           coalesce(sum(u.unsent), 0)::bigint,
           coalesce(sum(u.unsent) filter (where u.lease_owner is not null), 0)::bigint
    from dbops_jobs_outbox_unsent() u;
end;
$$;

-- One step of a `jobs retry` run, one round trip, in one transaction:
--  1. p_start: register the run (dbops_jobs_run_start: run id, lease, session lock);
--  2. record the SQS sends of the run's previous step (dbops_jobs_outbox_mark);
--  3. p_take > 0: take up to p_take rows earlier runs left unsent (dbops_jobs_outbox_take:
--     expired leases, dead runs), rows with resumed = true (action 'skipped' when the job
--     is no longer pending: marked skipped, not sent);
--  4. re-queue p_job_ids (dbops_jobs_retry with nothing to record: each job re-checked
--     under its row lock against p_expected, deleted jobs skipped), rows with resumed =
--     false;
--  5. one last row with job_id null and action 'recorded': `rejected` counts the sends of
--     step 2 whose rows the run no longer held (another run took them over: their
--     messages may exist twice, never zero times).
create or replace function dbops_jobs_retry_step(
    p_job_ids jsonb, p_operator text, p_lease_owner text, p_lease_seconds int default 300,
    p_expected jsonb default null,
    p_queue_url text default null,
    p_sent jsonb default '[]'::jsonb,
    p_failed jsonb default '[]'::jsonb,
    p_start boolean default false,
    p_command text default 'jobs retry',
    p_session_lock boolean default false,
    p_take int default 0
) returns table (
    job_id uuid, previous_status text, action text, outbox_id bigint, attempt int,
    operator text, requeued_at timestamptz, customer_id text, package_size int,
    priority_level int, created_at timestamptz, metadata jsonb, reason text, rejected bigint,
    resumed boolean
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_rejected bigint := 0;
begin
    perform dbops_jobs_ids_array(p_job_ids);
    perform dbops_jobs_require_owner(p_operator, p_lease_owner);
    if p_take is null or p_take < 0 then
        raise exception 'take must be zero or a positive number of rows' using errcode = '22023';
    end if;
    if p_start then
        perform dbops_jobs_run_start(p_lease_owner, p_operator, p_command, p_lease_seconds,
                                     p_session_lock);
    end if;
    if jsonb_array_length(coalesce(p_sent, '[]')) + jsonb_array_length(coalesce(p_failed, '[]')) > 0
    then
        select m.rejected into v_rejected
        from dbops_jobs_outbox_mark(p_lease_owner, p_queue_url, p_sent, p_failed) m;
    end if;
    if p_take > 0 then
        return query
        select t.job_id, null::text, case when t.taken then 'requeued' else 'skipped' end,
               t.outbox_id, t.attempt, t.operator, t.requeued_at, t.customer_id,
               t.package_size, t.priority_level, t.created_at, t.metadata, t.note,
               v_rejected, true
        from dbops_jobs_outbox_take(p_lease_owner, p_take, p_lease_seconds) t;
    end if;
    if jsonb_array_length(p_job_ids) > 0 then
        return query
        select r.job_id, r.previous_status, r.action, r.outbox_id, r.attempt, r.operator,
               r.requeued_at, r.customer_id, r.package_size, r.priority_level, r.created_at,
               r.metadata, r.reason, v_rejected, false
        from dbops_jobs_retry(p_job_ids, p_operator, p_lease_owner, p_lease_seconds,
                              p_expected, p_queue_url) r;
    end if;
    return query
    select null::uuid, null::text, 'recorded'::text, null::bigint, null::int, null::text,
           null::timestamptz, null::text, null::int, null::int, null::timestamptz,
           null::jsonb, null::text, v_rejected, false;
end;
$$;

-- The end of an outbox run, one round trip: record the last SQS sends (what
-- dbops_jobs_outbox_mark records), release the run (dbops_jobs_outbox_release: the run
-- finished, its session lock and leases let go) and read the outbox state afterwards
-- (unsent rows, and those leased to another live run).
create or replace function dbops_jobs_outbox_finish(
    p_lease_owner text,
    p_queue_url text default null,
    p_sent jsonb default '[]'::jsonb,
    p_failed jsonb default '[]'::jsonb
) returns table (
    sent bigint, failed bigint, rejected bigint, unsent bigint, leased_elsewhere bigint
)
language plpgsql volatile as $$
#variable_conflict use_column
declare
    v_sent bigint := 0;
    v_failed bigint := 0;
    v_rejected bigint := 0;
begin
    if coalesce(p_lease_owner, '') = '' then
        raise exception 'a lease owner is required' using errcode = '22023';
    end if;
    if jsonb_array_length(coalesce(p_sent, '[]')) + jsonb_array_length(coalesce(p_failed, '[]')) > 0
    then
        select m.sent, m.failed, m.rejected into v_sent, v_failed, v_rejected
        from dbops_jobs_outbox_mark(p_lease_owner, p_queue_url, p_sent, p_failed) m;
    end if;
    perform dbops_jobs_outbox_release(p_lease_owner);
    return query
    select v_sent, v_failed, v_rejected,
           coalesce(sum(u.unsent), 0)::bigint,
           coalesce(sum(u.unsent) filter (where u.lease_owner is not null), 0)::bigint
    from dbops_jobs_outbox_unsent() u;
end;
$$;

