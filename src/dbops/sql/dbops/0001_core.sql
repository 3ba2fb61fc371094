-- dbops core: health ping, migration listing, the operator action log, and the shared
-- argument check every later migration's functions use.

-- Bad input (SQLSTATE 22023, exit 2 in the CLI) unless p_ok is true: a null condition
-- (a missing argument) fails too. `perform dbops_require(p_limit >= 1, 'limit ...')`
-- stands for the `if ... then raise exception ... using errcode = '22023'` block.
-- IMMUTABLE, so the read-only role (`dbops db roles`) may call it from STABLE functions.
create or replace function dbops_require(p_ok boolean, p_message text) returns void
language plpgsql immutable parallel safe as $$
begin
    if p_ok is not true then
        raise exception '%', p_message using errcode = '22023';
    end if;
end;
$$;

create or replace function dbops_ping() returns table (ok boolean, server_time timestamptz)
language sql stable as $$ select true, now() $$;

create or replace function dbops_migrations_applied()
returns table (version text, checksum text, applied_at timestamptz)
language sql stable as $$
    select version, checksum, applied_at from dbops_schema_migrations order by version
$$;

create table if not exists dbops_action_log (
    id bigserial primary key,
    operator text not null,
    caller_arn text,
    command text not null,
    arguments jsonb not null default '{}'::jsonb,
    dry_run boolean not null default false,
    counts jsonb not null default '{}'::jsonb,
    outcome text not null check (outcome in ('ok', 'error', 'refused', 'interrupted', 'dry_run')),
    error text,
    started_at timestamptz not null,
    finished_at timestamptz not null default now()
);
create index if not exists dbops_action_log_started_idx on dbops_action_log (started_at desc);

create or replace function dbops_action_log_write(
    p_operator text,
    p_caller_arn text,
    p_command text,
    p_arguments jsonb,
    p_dry_run boolean,
    p_counts jsonb,
    p_outcome text,
    p_error text,
    p_started_at timestamptz
) returns table (id bigint)
language sql volatile as $$
    insert into dbops_action_log
        (operator, caller_arn, command, arguments, dry_run, counts, outcome, error, started_at)
    values
        (p_operator, p_caller_arn, p_command, coalesce(p_arguments, '{}'::jsonb), p_dry_run,
         coalesce(p_counts, '{}'::jsonb), p_outcome, p_error, p_started_at)
    returning dbops_action_log.id
$$;

-- `dbops log`: newest first; optional exact filters on operator and outcome, and on the
-- command (exactly, or a whole leading part: 'dlq' matches 'dlq redrive').
drop function if exists dbops_action_log_list(int, int);
create or replace function dbops_action_log_list(
    p_since_seconds int,
    p_limit int,
    p_operator text default null,
    p_command text default null,
    p_outcome text default null
)
returns table (
    id bigint, operator text, caller_arn text, command text, arguments jsonb, dry_run boolean,
    counts jsonb, outcome text, error text, started_at timestamptz, finished_at timestamptz
)
language sql stable as $$
    select l.id, l.operator, l.caller_arn, l.command, l.arguments, l.dry_run, l.counts,
           l.outcome, l.error, l.started_at, l.finished_at
    from dbops_action_log l
    where l.started_at >= now() - make_interval(secs => p_since_seconds)
      and (p_operator is null or l.operator = p_operator)
      and (p_outcome is null or l.outcome = p_outcome)
      and (p_command is null or l.command = p_command
           or left(l.command, length(p_command) + 1) = p_command || ' ')
    order by l.started_at desc, l.id desc
    limit p_limit
$$;
