-- dbops' view of the application schema: what it reads and writes, and what it found.
--
-- `dbops db check` runs this file in a transaction that is rolled back, with @schema@ =
-- pg_temp, so it works (and changes nothing) before dbops is installed; `dbops db migrate`
-- runs the same check first and refuses on an incompatible schema, then installs these
-- functions in public (@schema@ = public) for the PostgREST transport and the audit.
-- Types are compared without their modifiers (varchar(255) is varchar).

-- Every application column dbops uses. `accepted` lists the types it can work with
-- (through an explicit cast where needed); optional columns may be absent, and are then
-- shown empty by the commands that read them.
create or replace function @schema@.dbops_app_expectations()
returns table (
    table_name text, column_name text, accepted text[], required boolean, usage text
)
language sql immutable as $$
    select * from (values
        ('jobs', 'id', array['uuid'], true, 'key of every job command'),
        ('jobs', 'customer_id',
            array['text', 'character varying', 'character', 'uuid', 'integer', 'bigint'],
            true, 'read as text'),
        ('jobs', 'status', array['text', 'character varying'], true,
            'read; written as pending or failed'),
        ('jobs', 'created_at',
            array['timestamp with time zone', 'timestamp without time zone'], true, 'read'),
        ('jobs', 'updated_at',
            array['timestamp with time zone', 'timestamp without time zone'], true,
            'last sign of life; written on every change'),
        ('jobs', 'error_message', array['text', 'character varying'], true,
            'read; written by fail, recover and requeue'),
        ('jobs', 'completed_at',
            array['timestamp with time zone', 'timestamp without time zone'], true,
            'read; cleared by requeue'),
        ('jobs', 'priority_level', array['integer', 'smallint', 'bigint'], false,
            'read (shown empty when absent)'),
        ('jobs', 'package_size', array['integer', 'smallint', 'bigint'], false,
            'read (shown empty when absent)'),
        ('jobs', 'started_at',
            array['timestamp with time zone', 'timestamp without time zone'], false,
            'read: jobs stats runtimes (empty when absent)'),
        ('jobs', 'metadata', array['jsonb', 'json'], false,
            'read: copied into re-queued messages (empty when absent)'),
        ('job_results', 'job_id', array['uuid'], true, 'read'),
        ('job_results', 'status', array['text', 'character varying'], true, 'read'),
        ('job_results', 'updated_at',
            array['timestamp with time zone', 'timestamp without time zone'], true,
            'read: stuck submissions'),
        ('job_results', 'idempotency_key', array['text', 'character varying'], false,
            'read: duplicate submissions check'),
        ('worker_heartbeats', 'worker_id', array['uuid'], true, 'read'),
        ('worker_heartbeats', 'status', array['text', 'character varying'], true, 'read'),
        ('worker_heartbeats', 'current_job_id', array['uuid'], true, 'read'),
        ('worker_heartbeats', 'last_heartbeat',
            array['timestamp with time zone', 'timestamp without time zone'], true,
            'read: sign of life'),
        ('worker_heartbeats', 'queue_name', array['text', 'character varying'], false,
            'read (shown empty when absent)'),
        ('queue_history', 'id', array['*'], true, 'read as text; filled by its default'),
        ('queue_history', 'job_id', array['uuid'], true, 'read; written'),
        ('queue_history', 'event', array['text', 'character varying'], true,
            'read (legacy rows: status_from -> status_to); written'),
        ('queue_history', 'details', array['jsonb'], true, 'read; written'),
        ('queue_history', 'worker_id', array['uuid'], true, 'read; written'),
        ('queue_history', 'created_at',
            array['timestamp with time zone', 'timestamp without time zone'], true,
            'read; filled by its default'),
        ('rate_limit_requests', 'identifier', array['text', 'character varying'], true,
            'read; written by the rate-limit function'),
        ('rate_limit_requests', 'endpoint', array['text', 'character varying'], true,
            'read; written by the rate-limit function'),
        ('rate_limit_requests', 'created_at', array['timestamp with time zone'], true,
            'read; written by the rate-limit function')
    ) as e(table_name, column_name, accepted, required, usage)
$$;

-- Allowed values of jobs.status from its check constraint(s); null when unconstrained.
create or replace function @schema@.dbops_app_status_values()
returns table (status_values text[])
language sql stable as $$
    select case when count(*) = 0 then null else array(
        select distinct m[1]
        from pg_constraint c2,
             regexp_matches(pg_get_constraintdef(c2.oid), '''((?:[^'']|'''')*)''', 'g') m
        where c2.conrelid = to_regclass('public.jobs') and c2.contype = 'c'
          and pg_get_constraintdef(c2.oid) ~ '\mstatus\M'
        order by 1) end
    from pg_constraint c
    where c.conrelid = to_regclass('public.jobs') and c.contype = 'c'
      and pg_get_constraintdef(c.oid) ~ '\mstatus\M'
$$;

-- One row per table and column dbops uses (column_name null: the table itself), plus the
-- columns that would stop dbops' inserts (NOT NULL without a default) and the status
-- values dbops writes.
create or replace function @schema@.dbops_app_check()
returns table (
    table_name text, column_name text, expected text, found text, ok boolean, note text
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    v_values text[];
begin
    return query
    with tables as (
        select distinct e.table_name, to_regclass('public.' || e.table_name) as rel
        from @schema@.dbops_app_expectations() e
    ), cols as (
        select t.table_name, a.attname::text as column_name,
               regexp_replace(format_type(a.atttypid, null), '\(.*\)$', '') as type_name,
               a.attnotnull, (a.atthasdef or a.attidentity <> '') as has_default
        from tables t
        join pg_attribute a on a.attrelid = t.rel and a.attnum > 0 and not a.attisdropped
    )
    select t.table_name, null::text, 'table'::text,
           case when t.rel is null then 'missing' else 'present' end,
           t.rel is not null or t.table_name = 'rate_limit_requests',
           case when t.rel is null and t.table_name = 'rate_limit_requests'
                    then 'created by dbops db migrate'
                when t.rel is null and t.table_name = 'jobs'
                    then 'this database has no jobs table (is DATABASE_URL right?)'
                when t.rel is null then 'needed by dbops' end
    from tables t
    union all
    select e.table_name, e.column_name,
           case when e.accepted = array['*'] then 'any type'
                else array_to_string(e.accepted, ' | ') end
           || case when e.required then '' else ' (optional)' end,
           coalesce(c.type_name, 'missing'),
           case when c.column_name is null then not e.required
                else e.accepted = array['*'] or c.type_name = any (e.accepted) end,
           case when c.column_name is null and e.required then 'missing: ' || e.usage
                when c.column_name is null then 'absent: ' || e.usage
                when not (e.accepted = array['*'] or c.type_name = any (e.accepted))
                    then 'cannot use ' || c.type_name || ': ' || e.usage
                when c.type_name <> e.accepted[1] and e.accepted <> array['*']
                    then 'cast: ' || e.usage
                else e.usage end
    from @schema@.dbops_app_expectations() e
    join tables t on t.table_name = e.table_name and t.rel is not null
    left join cols c on c.table_name = e.table_name and c.column_name = e.column_name
    union all
    -- dbops inserts into these tables naming only its own columns
    select c.table_name, c.column_name, 'nullable or with a default', c.type_name || ' not null',
           false, 'dbops inserts rows without this column'
    from cols c
    where c.table_name in ('queue_history', 'rate_limit_requests')
      and c.attnotnull and not c.has_default
      and (c.table_name, c.column_name) not in (
          values ('queue_history', 'job_id'), ('queue_history', 'event'),
                 ('queue_history', 'details'), ('queue_history', 'worker_id'),
                 ('rate_limit_requests', 'identifier'), ('rate_limit_requests', 'endpoint'),
                 ('rate_limit_requests', 'created_at'));
    if to_regclass('public.jobs') is not null then
        select s.status_values into v_values from @schema@.dbops_app_status_values() s;
        return query
        select 'jobs'::text, 'status'::text, 'allows ' || w.v,
               case when v_values is null then 'unconstrained'
                    else array_to_string(v_values, ' | ') end,
               v_values is null or w.v = any (v_values),
               case when v_values is null or w.v = any (v_values)
                    then 'dbops writes ' || w.v
                    else 'dbops writes ' || w.v || ', which the status check constraint refuses'
               end
        from unnest(array['pending', 'failed']) as w(v);
    end if;
end;
$$;
