-- dbops rate limiting (docs/rate-limiting.md): rules seeded with the API's four presets,
-- temporary overrides, blocks, a per-minute denial counter, the one atomic check the API
-- calls (`dbops_rate_limit_hit`) and the functions behind `dbops ratelimit`.
--
-- Endpoints are normalised first (`dbops_rate_limit_normalize_endpoint`: lower case, no
-- query string or fragment, repeated slashes collapsed, one leading and no trailing slash);
-- matching, counting, blocks and storage all use the normalised form.
-- Matching: the rule for a request is the first enabled-or-disabled rule whose
-- `endpoint_pattern` LIKE-matches the endpoint (or the endpoint plus a trailing `/`, so that
-- `/api/auth/%` covers `/api/auth` itself) and whose `identifier_kind` is `any` or the
-- identifier's kind, ordered by `precedence` (lower first), then the longest pattern, then
-- name. A disabled rule still wins the match: its endpoints are not limited (blocks apply).
-- Counting is per (identifier, endpoint) over a sliding window of `window_seconds`.
-- Denied requests are not logged in rate_limit_requests (they would keep a client locked
-- out forever); they are counted per minute in dbops_rate_limit_denials instead.

-- dbops owns the API limiter's storage from here on. The table (the API's existing
-- sliding-window log) is created only when missing, with the definition the API uses,
-- and marked as dbops' own so that PROTECT (services/migrations.py) closes it to
-- Supabase's API roles in this same transaction. A table the application made is left as
-- it is.
do $$
begin
    if to_regclass('public.rate_limit_requests') is null then
        create table rate_limit_requests (
            id bigserial primary key,
            identifier text not null,
            endpoint text not null,
            created_at timestamptz not null default now()
        );
        comment on table rate_limit_requests is
            'dbops: created by dbops db migrate (the API''s rate-limit log)';
    end if;
end;
$$;
create index if not exists rate_limit_requests_lookup_idx
    on rate_limit_requests (identifier, endpoint, created_at desc);

create table if not exists dbops_rate_limit_rules (
    name text primary key,
    endpoint_pattern text not null,
    identifier_kind text not null default 'any'
        check (identifier_kind in ('any', 'ip', 'api_key')),
    max_requests int not null check (max_requests > 0),
    window_seconds int not null check (window_seconds > 0),
    precedence int not null default 100,
    enabled boolean not null default true,
    updated_by text not null default 'dbops db migrate',
    updated_at timestamptz not null default now()
);

insert into dbops_rate_limit_rules
    (name, endpoint_pattern, identifier_kind, max_requests, window_seconds, precedence)
values
    ('auth', '/api/auth/%', 'any', 5, 900, 10),
    ('admin', '/api/admin/%', 'any', 10, 60, 10),
    ('staff', '/api/staff/%', 'any', 30, 60, 10),
    -- the catch-all: `%` (not `/%`) so an endpoint sent without a leading slash is limited too
    ('public', '%', 'any', 100, 60, 1000)
on conflict (name) do nothing;

-- Temporary instructions, one table each, built from one list: overrides (a rule's limit
-- for a while) and blocks (an identifier refused for a while; endpoint null: every
-- endpoint). Both have the columns of who set them and when, until when, and who ended
-- them early and when (`ended` for overrides, `lifted` for blocks), and an index by subject,
-- latest expiry first.
do $$
declare
    t record;
begin
    for t in
        select * from (values
            ('overrides', 'rule_name', 'ended',
             'rule_name text not null references dbops_rate_limit_rules (name) on delete cascade,'
             ' max_requests int not null check (max_requests > 0),'
             ' window_seconds int not null check (window_seconds > 0), reason text'),
            ('blocks', 'identifier', 'lifted',
             'identifier text not null, endpoint text, reason text not null')
        ) v (kind, subject, ended, head_columns)
    loop
        execute format(
            'create table if not exists %I (id bigserial primary key, %s, '
            'created_by text not null, created_at timestamptz not null default now(), '
            'expires_at timestamptz not null, %I text, %I timestamptz)',
            'dbops_rate_limit_' || t.kind, t.head_columns, t.ended || '_by', t.ended || '_at');
        execute format('create index if not exists %I on %I (%I, expires_at desc)',
            format('dbops_rate_limit_%s_%s_idx', t.kind, split_part(t.subject, '_', 1)),
            'dbops_rate_limit_' || t.kind, t.subject);
    end loop;
end;
$$;

create table if not exists dbops_rate_limit_denials (
    minute timestamptz not null,
    identifier text not null,
    endpoint text not null,
    denied int not null default 0,
    blocked int not null default 0,
    primary key (minute, identifier, endpoint)
);

-- Supabase exposes public tables through PostgREST: with RLS on and no policy, only the
-- service role (which bypasses RLS) and the owner can touch them.
alter table dbops_rate_limit_rules enable row level security;
alter table dbops_rate_limit_overrides enable row level security;
alter table dbops_rate_limit_blocks enable row level security;
alter table dbops_rate_limit_denials enable row level security;

-- ---------------------------------------------------------------- helpers
-- The one rule for what an endpoint is (docs/rate-limiting.md, "Endpoints"): surrounding
-- whitespace, the fragment (`#...`) and the query string (`?...`) dropped, lower case,
-- runs of `/` collapsed to one, exactly one leading `/` and no trailing `/` ('/' stays '/').
-- `/API//auth/login/?next=x` -> `/api/auth/login`. Used by the check, status, reset and
-- blocks; dbops' Python code calls it too rather than re-implementing it.
create or replace function dbops_rate_limit_normalize_endpoint(p_endpoint text) returns text
language sql immutable strict parallel safe as $$
    select '/' || btrim(
        regexp_replace(
            lower(split_part(split_part(btrim(p_endpoint, E' \t\r\n'), '#', 1), '?', 1)),
            '/{2,}', '/', 'g'),
        '/')
$$;

create or replace function dbops_ratelimit_kind(p_identifier text) returns text
language sql immutable as $$
    select case
        when starts_with(p_identifier, 'ip:') and length(p_identifier) > 3 then 'ip'
        when starts_with(p_identifier, 'api_key:') and length(p_identifier) > 8 then 'api_key'
    end
$$;

-- The identifier's kind, or bad input (22023) when it is neither ip:<addr> nor api_key:<key>.
create or replace function dbops_ratelimit_require_kind(p_identifier text) returns text
language plpgsql immutable as $$
begin
    if dbops_ratelimit_kind(p_identifier) is null then
        raise exception 'identifier must look like ip:<address> or api_key:<key>'
            using errcode = '22023';
    end if;
    return dbops_ratelimit_kind(p_identifier);
end;
$$;

-- The longest window any rule (or live override) uses: how far back a window can reach.
create or replace function dbops_ratelimit_horizon(p_now timestamptz) returns int
language sql stable as $$
    select greatest(
        (select coalesce(max(r.window_seconds), 0) from dbops_rate_limit_rules r),
        (select coalesce(max(o.window_seconds), 0) from dbops_rate_limit_overrides o
          where o.expires_at > p_now)
    )
$$;

-- The rule that governs (endpoint, identifier kind) at p_now, override applied.
create or replace function dbops_ratelimit_rule_for(p_endpoint text, p_kind text, p_now timestamptz)
returns table (
    rule_name text, enabled boolean, max_requests int, window_seconds int,
    override_expires_at timestamptz
)
language sql stable as $$
    select r.name, r.enabled, coalesce(o.max_requests, r.max_requests),
           coalesce(o.window_seconds, r.window_seconds), o.expires_at
    from dbops_rate_limit_rules r
    cross join lateral (select dbops_rate_limit_normalize_endpoint(p_endpoint) as path) e
    left join lateral (
        select ov.max_requests, ov.window_seconds, ov.expires_at
        from dbops_rate_limit_overrides ov
        where ov.rule_name = r.name and ov.expires_at > p_now
        order by ov.created_at desc, ov.id desc
        limit 1
    ) o on true
    where (e.path like lower(r.endpoint_pattern) or e.path || '/' like lower(r.endpoint_pattern))
      and r.identifier_kind in ('any', p_kind)
    order by r.precedence, length(r.endpoint_pattern) desc, r.name
    limit 1
$$;

-- ---------------------------------------------------------------- the check
-- The decision for one request at p_now, recording nothing. STABLE, so `ratelimit status`
-- and the read-only role (`dbops db roles`) can use it; dbops_rate_limit_hit records.
create or replace function dbops_ratelimit_evaluate(
    p_identifier text, p_endpoint text, p_now timestamptz
)
returns table (
    allowed boolean, "limit" int, remaining int, reset_at timestamptz,
    retry_after_seconds int, rule_name text, blocked boolean, window_seconds int, used int,
    block_reason text, block_expires_at timestamptz, checked_at timestamptz
)
language plpgsql stable set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_kind text;
    v_now timestamptz := coalesce(p_now, now());
    v_endpoint text := dbops_rate_limit_normalize_endpoint(p_endpoint);
    v_rule record;
    v_block_reason text;
    v_block_expires timestamptz;
    v_used int := 0;
    v_oldest timestamptz;
    v_free_at timestamptz;
    v_reset timestamptz;
begin
    perform dbops_require(p_identifier is not null and p_endpoint is not null,
                          'identifier and endpoint are required');
    v_kind := dbops_ratelimit_require_kind(p_identifier);

    select b.reason, b.expires_at into v_block_reason, v_block_expires
    from dbops_rate_limit_blocks b
    where b.identifier = p_identifier
      and (b.endpoint is null or dbops_rate_limit_normalize_endpoint(b.endpoint) = v_endpoint)
      and b.expires_at > v_now
    order by b.expires_at desc
    limit 1;

    select * into v_rule from dbops_ratelimit_rule_for(v_endpoint, v_kind, v_now);

    -- 1. An active block denies, whatever the rule says.
    if v_block_expires is not null then
        return query select false, v_rule.max_requests, 0, v_block_expires,
            greatest(1, ceil(extract(epoch from v_block_expires - v_now)))::int,
            v_rule.rule_name, true, v_rule.window_seconds, null::int,
            v_block_reason, v_block_expires, v_now;
        return;
    end if;

    -- 2. No rule, or a disabled one: not limited.
    if v_rule.rule_name is null or not v_rule.enabled then
        return query select true, null::int, null::int, null::timestamptz, 0,
            v_rule.rule_name, false, null::int, null::int, null::text, null::timestamptz, v_now;
        return;
    end if;

    -- 3. Limited: count the sliding window.
    select count(*)::int, min(q.created_at) into v_used, v_oldest
    from rate_limit_requests q
    where q.identifier = p_identifier
      and q.endpoint = v_endpoint
      and q.created_at > v_now - make_interval(secs => v_rule.window_seconds);

    if v_used < v_rule.max_requests then
        v_reset := v_oldest + make_interval(secs => v_rule.window_seconds);
        return query select true, v_rule.max_requests, v_rule.max_requests - v_used, v_reset, 0,
            v_rule.rule_name, false, v_rule.window_seconds, v_used, null::text,
            null::timestamptz, v_now;
        return;
    end if;

    -- Denied: a slot frees when the (used - limit + 1)-th oldest request leaves the window.
    select q.created_at into v_free_at
    from rate_limit_requests q
    where q.identifier = p_identifier
      and q.endpoint = v_endpoint
      and q.created_at > v_now - make_interval(secs => v_rule.window_seconds)
    order by q.created_at asc
    offset (v_used - v_rule.max_requests)
    limit 1;
    v_reset := coalesce(v_free_at, v_now) + make_interval(secs => v_rule.window_seconds);
    return query select false, v_rule.max_requests, 0, v_reset,
        greatest(1, ceil(extract(epoch from v_reset - v_now)))::int,
        v_rule.rule_name, false, v_rule.window_seconds, v_used, null::text,
        null::timestamptz, v_now;
end;
$$;

-- The API's one call per request: atomic check-and-record. The decision and the insert
-- happen under a per-(identifier, endpoint) transaction advisory lock, so that concurrent
-- calls are serialised: evaluate (a fresh snapshot, taken after the lock), then log the
-- request only when allowed; a denial is counted per minute instead. That needs a fresh
-- snapshot after the lock: the function refuses to run above READ COMMITTED (SQLSTATE
-- 25000), where the transaction's snapshot predates the lock and every concurrent call
-- would count the same window and be allowed.
-- (It replaces dbops_ratelimit_check, whose p_record = false path nothing called.)
drop function if exists dbops_ratelimit_check(text, text, boolean);
create or replace function dbops_rate_limit_hit(p_identifier text, p_endpoint text)
returns table (
    allowed boolean, "limit" int, remaining int, reset_at timestamptz,
    retry_after_seconds int, rule_name text, blocked boolean, window_seconds int
)
language plpgsql volatile set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_now timestamptz;
    v record;
    v_endpoint text := dbops_rate_limit_normalize_endpoint(p_endpoint);
    v_isolation text := current_setting('transaction_isolation');
begin
    if v_isolation not in ('read committed', 'read uncommitted') then
        raise exception
            'dbops_rate_limit_hit cannot run in a % transaction (its snapshot predates the '
            'rate-limit lock, so concurrent calls would all be allowed): call it in READ '
            'COMMITTED or autocommit', upper(v_isolation)
            using errcode = '25000',
                  hint = 'call it in its own short READ COMMITTED transaction (autocommit)';
    end if;
    perform pg_advisory_xact_lock(hashtextextended(p_identifier || chr(31) || v_endpoint, 0));
    v_now := clock_timestamp();
    select * into v from dbops_ratelimit_evaluate(p_identifier, p_endpoint, v_now) e;
    if v.allowed then
        -- Allowed (limited or not): log it, so the window and `top` see it.
        insert into rate_limit_requests (identifier, endpoint, created_at)
        values (p_identifier, v_endpoint, v_now);
        if v."limit" is not null then
            v.remaining := v.remaining - 1;
            v.reset_at := coalesce(v.reset_at, v_now + make_interval(secs => v.window_seconds));
        end if;
    else
        insert into dbops_rate_limit_denials as d (minute, identifier, endpoint, denied, blocked)
        values (date_trunc('minute', v_now), p_identifier, v_endpoint, 1,
                case when v.blocked then 1 else 0 end)
        on conflict (minute, identifier, endpoint)
        do update set denied = d.denied + 1, blocked = d.blocked + excluded.blocked;
    end if;
    return query select v.allowed, v."limit", v.remaining, v.reset_at, v.retry_after_seconds,
        v.rule_name, v.blocked, v.window_seconds;
end;
$$;

-- ---------------------------------------------------------------- rules
-- One row type for the rule as it stands (what `ratelimit list`, `set`, `enable` and
-- `disable` show). The three functions used to declare it each; an older install's
-- versions (returning a record) are dropped so that they can be re-created with it.
do $$
declare
    fn regprocedure;
begin
    if to_regtype('public.dbops_ratelimit_rule_row') is null then
        create type dbops_ratelimit_rule_row as (
            name text, endpoint_pattern text, identifier_kind text, precedence int,
            enabled boolean, "limit" int, window_seconds int, base_limit int,
            base_window_seconds int, override_limit int, override_window_seconds int,
            override_expires_at timestamptz, override_reason text, override_created_by text,
            updated_by text, updated_at timestamptz
        );
    end if;
    for fn in
        select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public'
          and p.proname in ('dbops_ratelimit_rules', 'dbops_ratelimit_set',
                            'dbops_ratelimit_set_enabled')
          and p.prorettype <> 'public.dbops_ratelimit_rule_row'::regtype
    loop
        execute format('drop function %s', fn);
    end loop;
end;
$$;

create or replace function dbops_ratelimit_rules(p_name text)
returns setof dbops_ratelimit_rule_row
language plpgsql stable set search_path = public, pg_temp as $$
begin
    if p_name is not null
       and not exists (select 1 from dbops_rate_limit_rules r where r.name = p_name) then
        raise exception 'not found: no rate-limit rule named "%" (see `dbops ratelimit list`)',
            p_name using errcode = 'P0002';
    end if;
    return query
    select r.name, r.endpoint_pattern, r.identifier_kind, r.precedence, r.enabled,
           coalesce(o.max_requests, r.max_requests), coalesce(o.window_seconds, r.window_seconds),
           r.max_requests, r.window_seconds, o.max_requests, o.window_seconds, o.expires_at,
           o.reason, o.created_by, r.updated_by, r.updated_at
    from dbops_rate_limit_rules r
    left join lateral (
        select ov.max_requests, ov.window_seconds, ov.expires_at, ov.reason, ov.created_by
        from dbops_rate_limit_overrides ov
        where ov.rule_name = r.name and ov.expires_at > now()
        order by ov.created_at desc, ov.id desc
        limit 1
    ) o on true
    where p_name is null or r.name = p_name
    order by r.precedence, length(r.endpoint_pattern) desc, r.name;
end;
$$;

-- Permanent change (p_for_seconds null) or temporary override. Either way, any live
-- override of the rule ends now: the newest instruction is the one in force.
create or replace function dbops_ratelimit_set(
    p_name text, p_limit int, p_window_seconds int, p_for_seconds int, p_reason text,
    p_actor text
)
returns setof dbops_ratelimit_rule_row
language plpgsql volatile set search_path = public, pg_temp as $$
declare
    v_window int;
begin
    perform dbops_require(p_limit >= 1, 'limit must be at least 1');
    perform dbops_require(coalesce(p_window_seconds >= 1, true),
                          'window must be at least 1 second');
    perform dbops_require(coalesce(p_for_seconds >= 1, true),
                          'override duration must be at least 1 second');
    select r.window_seconds into v_window from dbops_rate_limit_rules r
    where r.name = p_name for update;
    if not found then
        raise exception 'not found: no rate-limit rule named "%" (see `dbops ratelimit list`)',
            p_name using errcode = 'P0002';
    end if;
    update dbops_rate_limit_overrides ov
    set expires_at = now(), ended_by = p_actor, ended_at = now()
    where ov.rule_name = p_name and ov.expires_at > now();
    if p_for_seconds is null then
        update dbops_rate_limit_rules r
        set max_requests = p_limit, window_seconds = coalesce(p_window_seconds, v_window),
            updated_by = coalesce(p_actor, 'unknown'), updated_at = now()
        where r.name = p_name;
    else
        insert into dbops_rate_limit_overrides
            (rule_name, max_requests, window_seconds, reason, created_by, expires_at)
        values (p_name, p_limit, coalesce(p_window_seconds, v_window), p_reason,
                coalesce(p_actor, 'unknown'), now() + make_interval(secs => p_for_seconds));
    end if;
    return query select * from dbops_ratelimit_rules(p_name);
end;
$$;

create or replace function dbops_ratelimit_set_enabled(p_name text, p_enabled boolean, p_actor text)
returns setof dbops_ratelimit_rule_row
language plpgsql volatile set search_path = public, pg_temp as $$
begin
    perform dbops_require(p_enabled is not null, 'enabled must be true or false');
    update dbops_rate_limit_rules r
    set enabled = p_enabled, updated_by = coalesce(p_actor, 'unknown'), updated_at = now()
    where r.name = p_name;
    if not found then
        raise exception 'not found: no rate-limit rule named "%" (see `dbops ratelimit list`)',
            p_name using errcode = 'P0002';
    end if;
    return query select * from dbops_ratelimit_rules(p_name);
end;
$$;

-- Only the service role may call these (Supabase grants new objects to anon and
-- authenticated by default; the shared finalize step revokes from PUBLIC only).
do $$
declare
    fn regprocedure;
    role_name text;
begin
    foreach role_name in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = role_name) then
            for fn in
                select p.oid::regprocedure from pg_proc p
                join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = 'public'
                  and (p.proname like 'dbops\_ratelimit\_%'
                       or p.proname like 'dbops\_rate\_limit\_%')
            loop
                execute format('revoke all on function %s from %I', fn, role_name);
            end loop;
            execute format(
                'revoke all on dbops_rate_limit_rules, dbops_rate_limit_overrides, '
                'dbops_rate_limit_blocks, dbops_rate_limit_denials from %I', role_name);
        end if;
    end loop;
end;
$$;
