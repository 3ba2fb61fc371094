-- dbops dlq stats: the job status of every job id a batch of DLQ messages names, in one call.

-- One row per distinct given id (trimmed), in no particular order: `status` is the job's
-- current status (legacy 'complete' reported as 'completed'), or null when the id is not a
-- UUID or names no job. Unlike dbops_jobs_status_lookup (which returns only the matches),
-- every id comes back, so the caller can tell "no such job" from a lost row. Never raises
-- on bad ids; works on both app schema variants (jobs.id is uuid in both, status is read as
-- text). plpgsql so that installing it does not need the `jobs` table to exist.
create or replace function dbops_dlq_stats_job_status(p_job_ids text[])
returns table (job_id text, status text)
language plpgsql stable as $$
#variable_conflict use_column
begin
    return query
    with given as (
        select distinct btrim(x) as raw
        from unnest(coalesce(p_job_ids, '{}'::text[])) as x
        where x is not null and btrim(x) <> '' and length(x) <= 100
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
           (case when j.status::text = 'complete' then 'completed' else j.status::text end)::text
    from ids i
    left join public.jobs j on i.id is not null and j.id = i.id;
end;
$$;
