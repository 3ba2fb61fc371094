"""The embedded local stack: PostgreSQL (pgserver) + SQS (moto's server), and seeding.

Modules here may import pgserver, moto, boto3 and psycopg (through `dbops.adapters`), but
only inside functions: importing `dbops.sandbox.*` stays cheap so that `dbops --help` and
`dbops sandbox --help` never load them.

- `runtime`: start/stop/status of the two servers, the state file, the `sandbox` profile.
- `seed`: deterministic scenarios (`incident`, `clean`).
- `demo`: `dbops demo` (up if needed, seed the incident, summarise what is wrong).
"""

from __future__ import annotations

PROFILE = "sandbox"
MAIN_QUEUE = "dbops-jobs"
DLQ = "dbops-jobs-dlq"
REGION = "us-east-1"
