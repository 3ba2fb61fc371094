-- dbops:no-transaction
-- Time-range index on the API's request log, for `dbops ratelimit top`, the audit's 429
-- ratio and `dbops ratelimit cleanup` (built without blocking the API's inserts).
create index concurrently if not exists dbops_rate_limit_requests_created_idx
    on rate_limit_requests (created_at);
