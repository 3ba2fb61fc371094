-- The backend's application schema (architecture.md section 3). Used by the sandbox and the
-- tests only: dbops never creates these tables in a real deployment.

create table if not exists jobs (
    id uuid primary key default gen_random_uuid(),
    customer_id text not null,
    package_size int,
    priority_level int not null default 3,
    status text not null default 'pending'
        check (status in ('pending', 'in_progress', 'completed', 'complete', 'failed', 'cancelled')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    completed_at timestamptz,
    error_message text,
    metadata jsonb not null default '{}'::jsonb
);
create index if not exists jobs_status_idx on jobs (status);
create index if not exists jobs_customer_idx on jobs (customer_id);
create index if not exists jobs_created_at_idx on jobs (created_at desc);

create table if not exists job_results (
    id uuid primary key default gen_random_uuid(),
    job_id uuid not null references jobs (id) on delete cascade,
    directory_name text not null,
    status text not null check (status in ('submitting', 'submitted', 'failed', 'skipped')),
    idempotency_key text unique,
    error_message text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index if not exists job_results_job_idx on job_results (job_id);

create table if not exists worker_heartbeats (
    worker_id uuid primary key,
    queue_name text,
    status text not null check (status in ('starting', 'idle', 'running', 'paused', 'error')),
    current_job_id uuid,
    last_heartbeat timestamptz not null default now()
);

create table if not exists queue_history (
    id bigserial primary key,
    job_id uuid,
    event text not null,
    details jsonb not null default '{}'::jsonb,
    worker_id uuid,
    created_at timestamptz not null default now()
);
create index if not exists queue_history_job_idx on queue_history (job_id, created_at desc);

create or replace function queue_history_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'queue_history is append-only';
end;
$$;
drop trigger if exists queue_history_no_update on queue_history;
create trigger queue_history_no_update before update or delete on queue_history
    for each row execute function queue_history_append_only();

create table if not exists rate_limit_requests (
    id bigserial primary key,
    identifier text not null,
    endpoint text not null,
    created_at timestamptz not null default now()
);
create index if not exists rate_limit_requests_lookup_idx
    on rate_limit_requests (identifier, endpoint, created_at desc);

-- Supabase's API roles, so the sandbox and tests see the same grants as a project.
do $$
declare
    r text;
begin
    foreach r in array array['service_role', 'anon', 'authenticated'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                execute format('create role %I nologin', r);
            exception when duplicate_object or unique_violation then
                null;  -- created meanwhile by a concurrent session (roles are cluster-wide)
            end;
        end if;
    end loop;
end;
$$;
-- What Supabase does for every new object in public (the reason dbops revokes).
alter default privileges in schema public grant all on tables to anon, authenticated;
alter default privileges in schema public grant all on functions to anon, authenticated;
