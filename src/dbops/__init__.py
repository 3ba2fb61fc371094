"""dbops: the on-call toolkit for an SQS + Postgres/Supabase job-processing backend."""

__version__ = "0.1.0"
