-- The backend's application schema (architecture.md section 3), in the two shapes the
-- sandbox builds (`dbops sandbox up --schema standard|legacy`, issue 11). Used by the
-- sandbox and the tests only: dbops never creates these tables in a real deployment.
--
-- One template for both: the loader (services/migrations.py, `render_variant`) keeps the
-- lines between `-- dbops:only standard` or `-- dbops:only legacy` and `-- dbops:end` for
-- that variant alone, and every other line for both. The migration set `app` is the
-- standard variant, `app_legacy` the legacy one (production as it is after years of
-- migrations), which differs in:
--   jobs               customer_id uuid; extra columns; RLS on with a service_role policy
--                      only; the status check has no 'cancelled' (both 'complete' and
--                      'completed' occur in real data)
--   queue_history      id uuid; event nullable; legacy status_from/status_to columns;
--                      details nullable without default; separate UPDATE and DELETE triggers
--   worker_heartbeats  extra columns; current_job_id a foreign key to jobs; a
--                      `stale_workers` view beside it
--   job_results        extra jsonb columns (payload, response_log)
--   rate_limit_requests id uuid

-- Supabase's API roles, so the sandbox and tests see the same grants as a project.
-- First: the legacy jobs policy below names service_role.
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

create table if not exists jobs (
    id uuid primary key default gen_random_uuid(),
-- dbops:only standard
    customer_id text not null,
-- dbops:end
-- dbops:only legacy
    customer_id uuid not null,
    business_name text,
    email text,
-- dbops:end
    package_size int,
-- dbops:only legacy
    directory_limit int,
    package_type text,
-- dbops:end
    priority_level int not null default 3,
    status text not null default 'pending',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    completed_at timestamptz,
    error_message text,
    metadata jsonb not null default '{}'::jsonb,
    constraint jobs_status_check
-- dbops:only standard
        check (status in ('pending', 'in_progress', 'completed', 'complete', 'failed', 'cancelled'))
-- dbops:end
-- dbops:only legacy
        check (status in ('pending', 'in_progress', 'complete', 'completed', 'failed'))
-- dbops:end
);
create index if not exists jobs_status_idx on jobs (status);
create index if not exists jobs_customer_idx on jobs (customer_id);
create index if not exists jobs_created_at_idx on jobs (created_at desc);

-- dbops:only legacy
alter table jobs enable row level security;
do $$
begin
    if not exists (select 1 from pg_policy
                   where polrelid = 'jobs'::regclass and polname = 'service_role_all') then
        create policy service_role_all on jobs for all to service_role
            using (true) with check (true);
    end if;
end;
$$;
-- dbops:end

create table if not exists job_results (
    id uuid primary key default gen_random_uuid(),
    job_id uuid not null references jobs (id) on delete cascade,
    directory_name text not null,
    status text not null check (status in ('submitting', 'submitted', 'failed', 'skipped')),
    idempotency_key text unique,
    error_message text,
-- dbops:only legacy
    payload jsonb,
    response_log jsonb,
-- dbops:end
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index if not exists job_results_job_idx on job_results (job_id);

create table if not exists worker_heartbeats (
    worker_id uuid primary key,
    queue_name text,
    status text not null check (status in ('starting', 'idle', 'running', 'paused', 'error')),
-- dbops:only standard
    current_job_id uuid,
    last_heartbeat timestamptz not null default now()
-- dbops:end
-- dbops:only legacy
    current_job_id uuid references jobs (id) on delete set null,
    last_heartbeat timestamptz not null default now(),
    queue_depth int,
    processing_count int default 0,
    metadata jsonb default '{}'::jsonb
-- dbops:end
);

-- dbops:only legacy
create or replace view stale_workers as
select w.worker_id, w.queue_name, w.status, w.current_job_id, w.last_heartbeat,
       now() - w.last_heartbeat as silent_for
from worker_heartbeats w
where w.last_heartbeat < now() - interval '2 minutes';
-- dbops:end

create table if not exists queue_history (
-- dbops:only standard
    id bigserial primary key,
    job_id uuid,
    event text not null,
    details jsonb not null default '{}'::jsonb,
-- dbops:end
-- dbops:only legacy
    id uuid primary key default gen_random_uuid(),
    job_id uuid,
    event text,
    status_from text,
    status_to text,
    details jsonb,
-- dbops:end
    worker_id uuid,
    created_at timestamptz not null default now()
);
create index if not exists queue_history_job_idx on queue_history (job_id, created_at desc);

-- dbops:only standard
create or replace function queue_history_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'queue_history is append-only';
end;
$$;
drop trigger if exists queue_history_no_update on queue_history;
create trigger queue_history_no_update before update or delete on queue_history
    for each row execute function queue_history_append_only();
-- dbops:end
-- dbops:only legacy
create or replace function queue_history_refuse_update() returns trigger language plpgsql as $$
begin
    raise exception 'queue_history is append-only: UPDATE is not allowed';
end;
$$;
create or replace function queue_history_refuse_delete() returns trigger language plpgsql as $$
begin
    raise exception 'queue_history is append-only: DELETE is not allowed';
end;
$$;
drop trigger if exists queue_history_no_update on queue_history;
create trigger queue_history_no_update before update on queue_history
    for each row execute function queue_history_refuse_update();
drop trigger if exists queue_history_no_delete on queue_history;
create trigger queue_history_no_delete before delete on queue_history
    for each row execute function queue_history_refuse_delete();
-- dbops:end

create table if not exists rate_limit_requests (
-- dbops:only standard
    id bigserial primary key,
-- dbops:end
-- dbops:only legacy
    id uuid primary key default gen_random_uuid(),
-- dbops:end
    identifier text not null,
    endpoint text not null,
    created_at timestamptz not null default now()
);
create index if not exists rate_limit_requests_lookup_idx
    on rate_limit_requests (identifier, endpoint, created_at desc);

-- What Supabase does for every new object in public (the reason dbops revokes).
alter default privileges in schema public grant all on tables to anon, authenticated;
alter default privileges in schema public grant all on functions to anon, authenticated;
