-- dbops:no-transaction
-- Indexes for `dbops jobs` on the application's tables, built without blocking writers.
-- The audit checks that jobs_in_progress_activity_idx exists. If a concurrent build was
-- interrupted, Postgres leaves an INVALID index that `if not exists` keeps: drop it
-- (`drop index concurrently jobs_in_progress_activity_idx;`) and run `dbops db migrate`.

-- Stale jobs: in-progress jobs by activity time (dbops_jobs_stale, dbops_jobs_claim_stale).
create index concurrently if not exists jobs_in_progress_activity_idx
    on jobs (updated_at) where status = 'in_progress';

-- Orphaned jobs: pending jobs by the time they became pending (dbops_jobs_orphans).
create index concurrently if not exists jobs_pending_since_idx
    on jobs (updated_at) where status = 'pending';

-- The worker holding a job (sign of life of in-progress jobs).
create index concurrently if not exists worker_heartbeats_current_job_idx
    on worker_heartbeats (current_job_id, last_heartbeat desc) where current_job_id is not null;
