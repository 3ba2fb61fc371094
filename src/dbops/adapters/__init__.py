"""Adapters: the only modules that import boto3/botocore, psycopg, supabase or httpx."""
