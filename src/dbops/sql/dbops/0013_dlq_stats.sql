-- dbops dlq stats: the job status of every job id a batch of DLQ messages names, in one call.

-- One row per distinct given id (trimmed), in no particular order: `status` is the job's
-- current status (legacy 'complete' reported as 'completed'), or null when the id is not a
-- UUID or names no job. Unlike dbops_jobs_status_lookup (which returns only the matches),
-- every id comes back, so the caller can tell "no such job" from a lost row. Never raises
-- on bad ids; works on both app schema variants (jobs.id is uuid in both, status is read as
-- text). The matching is dbops_jobs_status_lookup's (0004).
create or replace function dbops_dlq_stats_job_status(p_job_ids text[])
returns table (job_id text, status text)
language sql stable as $$
    with given as (
        select distinct btrim(x) as raw
        from unnest(coalesce(p_job_ids, '{}'::text[])) as x
        where x is not null and btrim(x) <> '' and length(x) <= 100
    )
    select g.raw, found.status
    from given g
    left join dbops_jobs_status_lookup(array(select raw from given)) as found
        on found.job_id = g.raw;
$$;
