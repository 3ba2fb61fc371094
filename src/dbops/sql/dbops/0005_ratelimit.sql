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

create table if not exists dbops_rate_limit_overrides (
    id bigserial primary key,
    rule_name text not null references dbops_rate_limit_rules (name) on delete cascade,
    max_requests int not null check (max_requests > 0),
    window_seconds int not null check (window_seconds > 0),
    reason text,
    created_by text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    ended_by text,
    ended_at timestamptz
);
create index if not exists dbops_rate_limit_overrides_rule_idx
    on dbops_rate_limit_overrides (rule_name, expires_at desc);

create table if not exists dbops_rate_limit_blocks (
    id bigserial primary key,
    identifier text not null,
    endpoint text, -- null: every endpoint
    reason text not null,
    created_by text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    lifted_by text,
    lifted_at timestamptz
);
create index if not exists dbops_rate_limit_blocks_identifier_idx
    on dbops_rate_limit_blocks (identifier, expires_at desc);

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
-- and the read-only role (`dbops db roles`) can use it; dbops_ratelimit_check records.
create or replace function dbops_ratelimit_evaluate(
-- That needs a fresh snapshot after the lock: with p_record the function refuses to run
-- above READ COMMITTED (SQLSTATE 25000), where the transaction's snapshot predates the lock
-- and every concurrent call would count the same window and be allowed.
    p_identifier text, p_endpoint text, p_now timestamptz
)
returns table (
    allowed boolean, "limit" int, remaining int, reset_at timestamptz,
    retry_after_seconds int, rule_name text, blocked boolean, window_seconds int, used int,
    block_reason text, block_expires_at timestamptz, checked_at timestamptz
)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_kind text := dbops_ratelimit_kind(p_identifier);
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
    if p_identifier is null or p_endpoint is null then
        raise exception 'identifier and endpoint are required' using errcode = '22023';
    end if;
    if v_kind is null then
        raise exception 'identifier must look like ip:<address> or api_key:<key>'
            using errcode = '22023';
    end if;

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

-- Evaluates (and with p_record, records) one request. With p_record the decision and the
-- insert happen under a per-(identifier, endpoint) transaction advisory lock, so that
-- concurrent calls are serialised: evaluate (a fresh snapshot, taken after the lock), then
-- log the request only when allowed; a denial is counted per minute instead.
create or replace function dbops_ratelimit_check(
    p_identifier text, p_endpoint text, p_record boolean
)
returns table (
    allowed boolean, "limit" int, remaining int, reset_at timestamptz,
    retry_after_seconds int, rule_name text, blocked boolean, window_seconds int, used int,
    block_reason text, block_expires_at timestamptz, checked_at timestamptz
)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_now timestamptz;
    v record;
    v_endpoint text := dbops_rate_limit_normalize_endpoint(p_endpoint);
    v_isolation text := current_setting('transaction_isolation');
begin
    -- A snapshot older than the lock would count a stale window: every concurrent call
    -- would be allowed. Refuse above READ COMMITTED (SQLSTATE 25000).
    if p_record and v_isolation not in ('read committed', 'read uncommitted') then
        raise exception
            'dbops_rate_limit_hit cannot run in a % transaction (its snapshot predates the '
            'rate-limit lock, so concurrent calls would all be allowed): call it in READ '
            'COMMITTED or autocommit', upper(v_isolation)
            using errcode = '25000',
                  hint = 'call it in its own short READ COMMITTED transaction (autocommit)';
    end if;
    if p_record then
        perform pg_advisory_xact_lock(
            hashtextextended(p_identifier || chr(31) || v_endpoint, 0));
    end if;
    v_now := clock_timestamp();
    select * into v from dbops_ratelimit_evaluate(p_identifier, p_endpoint, v_now) e;
    if p_record and v.allowed then
        -- Allowed (limited or not): log it, so the window and `top` see it.
        insert into rate_limit_requests (identifier, endpoint, created_at)
        values (p_identifier, v_endpoint, v_now);
        if v."limit" is not null then
            v.used := v.used + 1;
            v.remaining := v.remaining - 1;
            v.reset_at := coalesce(v.reset_at, v_now + make_interval(secs => v.window_seconds));
        end if;
    elsif p_record then
        insert into dbops_rate_limit_denials as d (minute, identifier, endpoint, denied, blocked)
        values (date_trunc('minute', v_now), p_identifier, v_endpoint, 1,
                case when v.blocked then 1 else 0 end)
        on conflict (minute, identifier, endpoint)
        do update set denied = d.denied + 1, blocked = d.blocked + excluded.blocked;
    end if;
    return query select v.allowed, v."limit", v.remaining, v.reset_at, v.retry_after_seconds,
        v.rule_name, v.blocked, v.window_seconds, v.used, v.block_reason, v.block_expires_at,
        v.checked_at;
end;
$$;

-- The API's one call per request: atomic check-and-record.
create or replace function dbops_rate_limit_hit(p_identifier text, p_endpoint text)
returns table (
    allowed boolean, "limit" int, remaining int, reset_at timestamptz,
    retry_after_seconds int, rule_name text, blocked boolean, window_seconds int
)
language sql volatile
as $$
    select c.allowed, c."limit", c.remaining, c.reset_at, c.retry_after_seconds, c.rule_name,
           c.blocked, c.window_seconds
    from dbops_ratelimit_check(p_identifier, p_endpoint, true) c
$$;

-- ---------------------------------------------------------------- rules
create or replace function dbops_ratelimit_rules(p_name text)
returns table (
    name text, endpoint_pattern text, identifier_kind text, precedence int, enabled boolean,
    "limit" int, window_seconds int, base_limit int, base_window_seconds int,
    override_limit int, override_window_seconds int, override_expires_at timestamptz,
    override_reason text, override_created_by text, updated_by text, updated_at timestamptz
)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
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
returns table (
    name text, endpoint_pattern text, identifier_kind text, precedence int, enabled boolean,
    "limit" int, window_seconds int, base_limit int, base_window_seconds int,
    override_limit int, override_window_seconds int, override_expires_at timestamptz,
    override_reason text, override_created_by text, updated_by text, updated_at timestamptz
)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_window int;
begin
    if p_limit is null or p_limit < 1 then
        raise exception 'limit must be at least 1' using errcode = '22023';
    end if;
    if p_window_seconds is not null and p_window_seconds < 1 then
        raise exception 'window must be at least 1 second' using errcode = '22023';
    end if;
    if p_for_seconds is not null and p_for_seconds < 1 then
        raise exception 'override duration must be at least 1 second' using errcode = '22023';
    end if;
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
returns table (
    name text, endpoint_pattern text, identifier_kind text, precedence int, enabled boolean,
    "limit" int, window_seconds int, base_limit int, base_window_seconds int,
    override_limit int, override_window_seconds int, override_expires_at timestamptz,
    override_reason text, override_created_by text, updated_by text, updated_at timestamptz
)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
begin
    if p_enabled is null then
        raise exception 'enabled must be true or false' using errcode = '22023';
    end if;
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

-- ---------------------------------------------------------------- reading traffic
-- Who uses the most of their limit. `requests` = allowed + denied within p_since_seconds
-- (denials are counted per minute); `window_requests` = what counts against the limit now.
create or replace function dbops_ratelimit_top(p_since_seconds int, p_limit int)
returns table (
    identifier text, endpoint text, rule_name text, requests bigint, allowed bigint,
    denied bigint, window_requests bigint, "limit" int, window_seconds int,
    percent_of_limit numeric, throttled boolean, blocked boolean
)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_now timestamptz := now();
    v_horizon int;
begin
    if p_since_seconds is null or p_since_seconds < 1 then
        raise exception '--since must be at least 1 second' using errcode = '22023';
    end if;
    v_horizon := greatest(p_since_seconds, dbops_ratelimit_horizon(v_now));
    return query
    with recent as (
        select q.identifier, q.endpoint, q.created_at
        from rate_limit_requests q
        where q.created_at > v_now - make_interval(secs => v_horizon)
    ),
    den as (
        select d.identifier, d.endpoint, sum(d.denied)::bigint as denied
        from dbops_rate_limit_denials d
        where d.minute >= date_trunc('minute', v_now - make_interval(secs => p_since_seconds))
        group by d.identifier, d.endpoint
    ),
    kinds as (
        select distinct q.endpoint, dbops_ratelimit_kind(q.identifier) as kind from recent q
        union
        select distinct d.endpoint, dbops_ratelimit_kind(d.identifier) from den d
    ),
    rules as (
        select k.endpoint, k.kind, f.rule_name, f.enabled, f.max_requests, f.window_seconds
        from kinds k
        left join lateral dbops_ratelimit_rule_for(k.endpoint, k.kind, v_now) f on true
    ),
    counts as (
        select q.identifier, q.endpoint,
               count(*) filter (
                   where q.created_at > v_now - make_interval(secs => p_since_seconds)
               ) as allowed,
               count(*) filter (
                   where ru.enabled
                     and q.created_at > v_now - make_interval(secs => ru.window_seconds)
               ) as window_requests
        from recent q
        join rules ru on ru.endpoint = q.endpoint
                     and ru.kind is not distinct from dbops_ratelimit_kind(q.identifier)
        group by q.identifier, q.endpoint
    ),
    merged as (
        select coalesce(c.identifier, d.identifier) as identifier,
               coalesce(c.endpoint, d.endpoint) as endpoint,
               coalesce(c.allowed, 0) as allowed,
               coalesce(d.denied, 0) as denied,
               coalesce(c.window_requests, 0) as window_requests
        from counts c
        full join den d on d.identifier = c.identifier and d.endpoint = c.endpoint
    )
    select m.identifier, m.endpoint, ru.rule_name, m.allowed + m.denied, m.allowed, m.denied,
           m.window_requests,
           case when ru.enabled then ru.max_requests end,
           case when ru.enabled then ru.window_seconds end,
           case when ru.enabled
                then round(100.0 * m.window_requests / ru.max_requests, 1) end,
           coalesce(ru.enabled and m.window_requests >= ru.max_requests, false),
           exists (
               select 1 from dbops_rate_limit_blocks b
               where b.identifier = m.identifier
                 and (b.endpoint is null
                      or dbops_rate_limit_normalize_endpoint(b.endpoint)
                         = dbops_rate_limit_normalize_endpoint(m.endpoint))
                 and b.expires_at > v_now
           )
    from merged m
    left join rules ru on ru.endpoint = m.endpoint
                      and ru.kind is not distinct from dbops_ratelimit_kind(m.identifier)
    where m.allowed + m.denied > 0
    order by 10 desc nulls last, 4 desc, 1, 2
    limit p_limit;
end;
$$;

-- One identifier: per endpoint (or the given one), used / remaining / reset / block.
-- Endpoints are shown normalised (dbops_rate_limit_normalize_endpoint).
create or replace function dbops_ratelimit_status(p_identifier text, p_endpoint text)
returns table (
    endpoint text, allowed boolean, "limit" int, remaining int, used int, reset_at timestamptz,
    retry_after_seconds int, rule_name text, window_seconds int, blocked boolean,
    block_reason text, block_expires_at timestamptz
)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_now timestamptz := now();
    v_endpoint text;
    v_any boolean := false;
begin
    if dbops_ratelimit_kind(p_identifier) is null then
        raise exception 'identifier must look like ip:<address> or api_key:<key>'
            using errcode = '22023';
    end if;
    for v_endpoint in
        select dbops_rate_limit_normalize_endpoint(p_endpoint) where p_endpoint is not null
        union
        select dbops_rate_limit_normalize_endpoint(q.endpoint) from rate_limit_requests q
        where p_endpoint is null and q.identifier = p_identifier
          and q.created_at > v_now - make_interval(secs => dbops_ratelimit_horizon(v_now))
        union
        select dbops_rate_limit_normalize_endpoint(b.endpoint) from dbops_rate_limit_blocks b
        where p_endpoint is null and b.identifier = p_identifier and b.endpoint is not null
          and b.expires_at > v_now
        order by 1
    loop
        v_any := true;
        return query
        select v_endpoint, c.allowed, c."limit", c.remaining, coalesce(c.used, 0), c.reset_at,
               c.retry_after_seconds, c.rule_name, c.window_seconds, c.blocked, c.block_reason,
               c.block_expires_at
        from dbops_ratelimit_evaluate(p_identifier, v_endpoint, v_now) c;
    end loop;
    if not v_any then
        return query
        select null::text, b.expires_at is null, null::int, null::int, 0, b.expires_at,
               case when b.expires_at is null then 0
                    else greatest(1, ceil(extract(epoch from b.expires_at - v_now)))::int end,
               null::text, null::int, b.expires_at is not null, b.reason, b.expires_at
        from (select 1) one
        left join lateral (
            select bl.reason, bl.expires_at from dbops_rate_limit_blocks bl
            where bl.identifier = p_identifier and bl.endpoint is null and bl.expires_at > v_now
            order by bl.expires_at desc limit 1
        ) b on true;
    end if;
end;
$$;

-- The audit's 429 ratio: denied / (allowed + denied) over the last p_since_seconds.
create or replace function dbops_ratelimit_429_ratio(p_since_seconds int)
returns table (requests bigint, allowed bigint, denied bigint, ratio double precision,
               percent double precision)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_allowed bigint;
    v_denied bigint;
begin
    select count(*) into v_allowed from rate_limit_requests q
    where q.created_at > now() - make_interval(secs => p_since_seconds);
    select coalesce(sum(d.denied), 0) into v_denied from dbops_rate_limit_denials d
    where d.minute >= date_trunc('minute', now() - make_interval(secs => p_since_seconds));
    return query select v_allowed + v_denied, v_allowed, v_denied,
        case when v_allowed + v_denied = 0 then 0::double precision
             else v_denied::double precision / (v_allowed + v_denied) end,
        case when v_allowed + v_denied = 0 then 0::double precision
             else 100.0 * v_denied / (v_allowed + v_denied) end;
end;
$$;

-- ---------------------------------------------------------------- reset
create or replace function dbops_ratelimit_reset_preview(p_identifier text, p_endpoint text)
returns table (cutoff timestamptz, requests bigint, endpoints bigint)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz := now() - make_interval(secs => dbops_ratelimit_horizon(now()));
begin
    if dbops_ratelimit_kind(p_identifier) is null then
        raise exception 'identifier must look like ip:<address> or api_key:<key>'
            using errcode = '22023';
    end if;
    return query
    select v_cutoff, count(*), count(distinct q.endpoint)
    from rate_limit_requests q
    where q.identifier = p_identifier
      and (p_endpoint is null or q.endpoint = dbops_rate_limit_normalize_endpoint(p_endpoint))
      and q.created_at > v_cutoff;
end;
$$;

-- One batch of a reset: deletes at most p_batch of the identifier's rows newer than p_cutoff.
create or replace function dbops_ratelimit_reset_batch(
    p_identifier text, p_endpoint text, p_cutoff timestamptz, p_batch int
)
returns table (deleted bigint)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_deleted bigint;
begin
    if dbops_ratelimit_kind(p_identifier) is null then
        raise exception 'identifier must look like ip:<address> or api_key:<key>'
            using errcode = '22023';
    end if;
    delete from rate_limit_requests q
    where q.id in (
        select s.id from rate_limit_requests s
        where s.identifier = p_identifier
          and (p_endpoint is null or s.endpoint = dbops_rate_limit_normalize_endpoint(p_endpoint))
          and s.created_at > p_cutoff
        limit greatest(p_batch, 1)
    );
    get diagnostics v_deleted = row_count;
    return query select v_deleted;
end;
$$;

-- ---------------------------------------------------------------- blocks
create or replace function dbops_ratelimit_blocks(p_identifier text)
returns table (
    id bigint, identifier text, endpoint text, reason text, created_by text,
    created_at timestamptz, expires_at timestamptz
)
language sql stable
as $$
    select b.id, b.identifier, dbops_rate_limit_normalize_endpoint(b.endpoint), b.reason,
           b.created_by, b.created_at, b.expires_at
    from dbops_rate_limit_blocks b
    where (p_identifier is null or b.identifier = p_identifier) and b.expires_at > now()
    order by b.expires_at desc, b.id
$$;

-- Blocks (identifier, endpoint) until now() + p_for_seconds; replaces a live block on the
-- same (identifier, endpoint).
create or replace function dbops_ratelimit_block(
    p_identifier text, p_endpoint text, p_for_seconds int, p_reason text, p_actor text
)
returns table (
    id bigint, identifier text, endpoint text, reason text, created_by text,
    created_at timestamptz, expires_at timestamptz, replaced int
)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_replaced int;
    v_endpoint text := dbops_rate_limit_normalize_endpoint(p_endpoint);
begin
    if dbops_ratelimit_kind(p_identifier) is null then
        raise exception 'identifier must look like ip:<address> or api_key:<key>'
            using errcode = '22023';
    end if;
    if p_for_seconds is null or p_for_seconds < 1 then
        raise exception 'block duration must be at least 1 second' using errcode = '22023';
    end if;
    if p_reason is null or btrim(p_reason) = '' then
        raise exception 'a block needs a reason' using errcode = '22023';
    end if;
    update dbops_rate_limit_blocks b
    set expires_at = now(), lifted_by = coalesce(p_actor, 'unknown'), lifted_at = now()
    where b.identifier = p_identifier
      and dbops_rate_limit_normalize_endpoint(b.endpoint) is not distinct from v_endpoint
      and b.expires_at > now();
    get diagnostics v_replaced = row_count;
    return query
    insert into dbops_rate_limit_blocks as b
        (identifier, endpoint, reason, created_by, expires_at)
    values (p_identifier, v_endpoint, p_reason, coalesce(p_actor, 'unknown'),
            now() + make_interval(secs => p_for_seconds))
    returning b.id, b.identifier, b.endpoint, b.reason, b.created_by, b.created_at,
              b.expires_at, v_replaced;
end;
$$;

-- Lifts the identifier's live blocks (only the one on p_endpoint when given).
create or replace function dbops_ratelimit_unblock(
    p_identifier text, p_endpoint text, p_actor text
)
returns table (lifted bigint)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_lifted bigint;
begin
    update dbops_rate_limit_blocks b
    set expires_at = now(), lifted_by = coalesce(p_actor, 'unknown'), lifted_at = now()
    where b.identifier = p_identifier
      and (p_endpoint is null
           or dbops_rate_limit_normalize_endpoint(b.endpoint)
              = dbops_rate_limit_normalize_endpoint(p_endpoint))
      and b.expires_at > now();
    get diagnostics v_lifted = row_count;
    return query select v_lifted;
end;
$$;

-- ---------------------------------------------------------------- cleanup
create or replace function dbops_ratelimit_cleanup_preview(p_older_than_seconds int)
returns table (cutoff timestamptz, requests bigint, denial_rows bigint, horizon_seconds int)
language plpgsql stable
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz := now() - make_interval(secs => p_older_than_seconds);
begin
    if p_older_than_seconds is null or p_older_than_seconds < 1 then
        raise exception '--older-than must be at least 1 second' using errcode = '22023';
    end if;
    return query
    select v_cutoff,
           (select count(*) from rate_limit_requests q where q.created_at < v_cutoff),
           (select count(*) from dbops_rate_limit_denials d
             where d.minute <= v_cutoff - interval '1 minute'),
           dbops_ratelimit_horizon(now());
end;
$$;

-- One batch of cleanup: at most p_batch request rows and p_batch denial counters, all older
-- than p_cutoff. Refuses a cutoff inside a live window (that would reset everyone's limits).
create or replace function dbops_ratelimit_cleanup_batch(p_cutoff timestamptz, p_batch int)
returns table (deleted_requests bigint, deleted_denials bigint)
language plpgsql volatile
set search_path = public, pg_temp
as $$
#variable_conflict use_column
declare
    v_requests bigint;
    v_denials bigint;
begin
    if p_cutoff is null
       or p_cutoff > now() - make_interval(secs => dbops_ratelimit_horizon(now())) then
        raise exception 'cutoff is inside a live rate-limit window: use a longer --older-than'
            using errcode = '22023';
    end if;
    delete from rate_limit_requests q
    where q.id in (
        select s.id from rate_limit_requests s
        where s.created_at < p_cutoff
        limit greatest(p_batch, 1)
    );
    get diagnostics v_requests = row_count;
    delete from dbops_rate_limit_denials d
    where d.ctid = any (array(
        select s.ctid from dbops_rate_limit_denials s
        where s.minute <= p_cutoff - interval '1 minute'
        limit greatest(p_batch, 1)
    ));
    get diagnostics v_denials = row_count;
    return query select v_requests, v_denials;
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
