-- `dbops top` and `dbops metrics`: one frame of figures in one round trip.
--
-- dbops_overview() is STABLE and, as its first statement, switches the calling
-- transaction to READ ONLY (like dbops_audit_observe, which it calls). It returns one row with one jsonb document:
--   jobs       {by_status, per_minute: [{minute, completed, failed}], minutes}
--   workers    {alive, dead, total, dead_holding_jobs, by_status, dead_after_seconds}
--   ratelimit  {top: [...top p_top offenders by denials, then requests...],
--               by_rule: [{rule, requests, allowed, denied}], window_seconds}
--   audit      {check id: {state, observed, reason, elapsed_ms}} for p_audit_only
--              (the audit's own observations: jobs.stale and jobs.orphaned carry the
--              stale/orphaned counts, with the same rules as dbops_jobs_stale and
--              dbops_jobs_orphans)
--   errors     {section: message} for each section that failed (a missing table, a
--              privilege the role lacks): the other sections still answer.
-- Like the audit's functions it is plpgsql, resolving the application's tables at run
-- time, and reads customer_id/optional columns nowhere, so it works on both app schema
-- variants.

create or replace function dbops_overview(
    p_stale_seconds int default 600,
    p_dead_seconds int default 120,
    p_orphan_seconds int default 1800,
    p_minutes int default 15,
    p_window_seconds int default 900,
    p_top int default 5,
    p_audit_only text[] default null,
    p_submitting_seconds int default 900,
    p_error_window_seconds int default 86400,
    p_ratio_window_seconds int default 3600,
    p_cleanup_seconds int default 86400,
    p_recovery_cap int default null
) returns table (overview jsonb)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_now constant timestamptz := now();
    v_dead_cut timestamptz;
    v_jobs jsonb := null;
    v_workers jsonb := null;
    v_ratelimit jsonb := null;
    v_audit jsonb := '{}'::jsonb;
    v_errors jsonb := '{}'::jsonb;
    v_rows jsonb;
begin
    -- Read-only from here to the end of the caller's transaction. Set here, outside any
    -- exception block: a subtransaction (each block below) restores the read-only flag
    -- it started with when it ends, so dbops_audit_observe's own switch would not last.
    perform set_config('transaction_read_only', 'on', true);
    perform dbops_require(
        num_nulls(p_stale_seconds, p_dead_seconds, p_orphan_seconds, p_window_seconds) = 0
            and least(p_stale_seconds, p_dead_seconds, p_orphan_seconds, p_window_seconds) > 0,
        'overview durations must be positive numbers of seconds');
    perform dbops_require(p_minutes between 1 and 1440,
                          'overview minutes must be between 1 and 1440');
    perform dbops_require(p_top between 0 and 100, 'overview top must be between 0 and 100');
    v_dead_cut := v_now - make_interval(secs => p_dead_seconds);

    -- the audit's own observations (the cheap subset's), each isolated by the dispatcher
    if p_audit_only is null or cardinality(p_audit_only) > 0 then
        begin
            select coalesce(jsonb_object_agg(o.check_id, jsonb_build_object(
                       'state', o.state, 'observed', o.observed, 'reason', o.reason,
                       'elapsed_ms', o.elapsed_ms)), '{}'::jsonb)
              into v_audit
              from dbops_audit_observe(
                       p_stale_seconds => p_stale_seconds, p_dead_seconds => p_dead_seconds,
                       p_orphan_seconds => p_orphan_seconds,
                       p_submitting_seconds => p_submitting_seconds,
                       p_error_window_seconds => p_error_window_seconds,
                       p_ratio_window_seconds => p_ratio_window_seconds,
                       p_cleanup_seconds => p_cleanup_seconds,
                       p_recovery_cap => p_recovery_cap,
                       p_only => p_audit_only) o;
        exception when others then
            v_errors := v_errors || jsonb_build_object('audit', sqlstate || ': ' || sqlerrm);
        end;
    end if;

    -- jobs: by status, completed and failed per minute (zeros included, oldest first)
    begin
        select jsonb_build_object(
                   'by_status', (select coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
                                   from (select coalesce(j.status, 'null') as status,
                                                count(*) as n
                                           from jobs j group by 1) s),
                   'minutes', p_minutes,
                   'per_minute', (
                       with finished as (
                           select date_trunc('minute', coalesce(j.completed_at, j.updated_at))
                                      as minute,
                                  j.status
                             from jobs j
                            where j.status in ('completed', 'complete', 'failed')
                              and coalesce(j.completed_at, j.updated_at)
                                  >= date_trunc('minute', v_now)
                                     - make_interval(mins => p_minutes - 1)),
                       minutes as (
                           select date_trunc('minute', v_now) - make_interval(mins => m)
                                      as minute
                             from generate_series(p_minutes - 1, 0, -1) m)
                       select jsonb_agg(jsonb_build_object(
                                  'minute', mi.minute,
                                  'completed', (select count(*) from finished f
                                                 where f.minute = mi.minute
                                                   and f.status <> 'failed'),
                                  'failed', (select count(*) from finished f
                                              where f.minute = mi.minute
                                                and f.status = 'failed'))
                              order by mi.minute)
                         from minutes mi))
          into v_jobs;
    exception when others then
        v_errors := v_errors || jsonb_build_object('jobs', sqlstate || ': ' || sqlerrm);
    end;

    -- workers: alive = a heartbeat within p_dead_seconds (the audit's and `jobs stale`'s
    -- rule), dead otherwise
    begin
        select jsonb_build_object(
                   'alive', count(*) filter (where w.last_heartbeat >= v_dead_cut),
                   'dead', count(*) filter (where w.last_heartbeat is null
                                               or w.last_heartbeat < v_dead_cut),
                   'total', count(*),
                   'dead_holding_jobs', count(*) filter (
                       where (w.last_heartbeat is null or w.last_heartbeat < v_dead_cut)
                         and w.current_job_id is not null),
                   'dead_after_seconds', p_dead_seconds,
                   'by_status', (select coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
                                   from (select coalesce(h.status, 'null') as status,
                                                count(*) as n
                                           from worker_heartbeats h group by 1) s))
          into v_workers
          from worker_heartbeats w;
    exception when others then
        v_errors := v_errors || jsonb_build_object('workers', sqlstate || ': ' || sqlerrm);
    end;

    -- rate limits: dbops_ratelimit_top over the window (every identifier), re-ranked
    -- by denials then requests; and the same traffic summed per rule
    begin
        select coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) into v_rows
          from dbops_ratelimit_top(p_window_seconds, null, 'denied') t;
        select jsonb_build_object(
                   'window_seconds', p_window_seconds,
                   'top', (select coalesce(jsonb_agg(x.r order by
                                       (x.r->>'denied')::bigint desc,
                                       (x.r->>'requests')::bigint desc,
                                       x.r->>'identifier', x.r->>'endpoint'), '[]'::jsonb)
                             from (select r from jsonb_array_elements(v_rows) r
                                    order by (r->>'denied')::bigint desc,
                                             (r->>'requests')::bigint desc,
                                             r->>'identifier', r->>'endpoint'
                                    limit p_top) x),
                   'by_rule', (select coalesce(jsonb_agg(jsonb_build_object(
                                          'rule', g.rule, 'requests', g.requests,
                                          'allowed', g.allowed, 'denied', g.denied)
                                      order by g.rule), '[]'::jsonb)
                                 from (select coalesce(r->>'rule_name', '(none)') as rule,
                                              sum((r->>'requests')::bigint) as requests,
                                              sum((r->>'allowed')::bigint) as allowed,
                                              sum((r->>'denied')::bigint) as denied
                                         from jsonb_array_elements(v_rows) r
                                        group by 1) g))
          into v_ratelimit;
    exception when others then
        v_errors := v_errors || jsonb_build_object('ratelimit', sqlstate || ': ' || sqlerrm);
    end;

    overview := jsonb_build_object(
        'at', v_now, 'jobs', v_jobs, 'workers', v_workers, 'ratelimit', v_ratelimit,
        'audit', v_audit, 'errors', v_errors);
    return next;
end;
$$;
