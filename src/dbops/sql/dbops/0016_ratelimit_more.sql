-- dbops rate limiting, continued (0005_ratelimit.sql has the tables, the rules and the
-- check): reading traffic (`ratelimit top`, `status`, the audit's 429 ratio), `reset`,
-- blocks and `cleanup`. Applied after 0005, whose functions these call.

-- ---------------------------------------------------------------- reading traffic
-- Who is hammering the API. `requests` = allowed + denied within p_since_seconds (denials
-- are counted per minute); `window_requests` = what counts against the limit now, and
-- `percent_of_limit` its share of the limit. p_sort: 'denied' (denials, then requests:
-- a client being refused most is first even when its window has emptied), 'requests'
-- (then denials) or 'percent' (share of the limit now, then requests).
drop function if exists dbops_ratelimit_top(int, int);
create or replace function dbops_ratelimit_top(p_since_seconds int, p_limit int, p_sort text)
returns table (
    identifier text, endpoint text, rule_name text, requests bigint, allowed bigint,
    denied bigint, window_requests bigint, "limit" int, window_seconds int,
    percent_of_limit numeric, throttled boolean, blocked boolean
)
language plpgsql stable set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_now timestamptz := now();
    v_horizon int;
begin
    perform dbops_require(p_since_seconds >= 1, '--since must be at least 1 second');
    perform dbops_require(p_sort in ('denied', 'requests', 'percent'),
                          '--sort must be denied, requests or percent');
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
    order by case p_sort when 'denied' then m.denied when 'requests' then m.allowed + m.denied
             end desc nulls last,
             case p_sort when 'denied' then m.allowed + m.denied when 'requests' then m.denied
             end desc nulls last,
             10 desc nulls last, 4 desc, 1, 2
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
language plpgsql stable set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_now timestamptz := now();
    v_endpoint text;
    v_any boolean := false;
begin
    perform dbops_ratelimit_require_kind(p_identifier);
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
language plpgsql stable set search_path = public, pg_temp as $$
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
language plpgsql stable set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz := now() - make_interval(secs => dbops_ratelimit_horizon(now()));
begin
    perform dbops_ratelimit_require_kind(p_identifier);
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
language plpgsql volatile set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_deleted bigint;
begin
    perform dbops_ratelimit_require_kind(p_identifier);
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
language plpgsql volatile set search_path = public, pg_temp as $$
declare
    v_replaced int;
    v_endpoint text := dbops_rate_limit_normalize_endpoint(p_endpoint);
begin
    perform dbops_ratelimit_require_kind(p_identifier);
    perform dbops_require(p_for_seconds >= 1, 'block duration must be at least 1 second');
    perform dbops_require(btrim(p_reason) <> '', 'a block needs a reason');
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
language plpgsql volatile set search_path = public, pg_temp as $$
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
language plpgsql stable set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz := now() - make_interval(secs => p_older_than_seconds);
begin
    perform dbops_require(p_older_than_seconds >= 1, '--older-than must be at least 1 second');
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
language plpgsql volatile set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
    v_requests bigint;
    v_denials bigint;
begin
    perform dbops_require(
        p_cutoff <= now() - make_interval(secs => dbops_ratelimit_horizon(now())),
        'cutoff is inside a live rate-limit window: use a longer --older-than');
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
