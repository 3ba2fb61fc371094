"""The embedded local stack: PostgreSQL (pgserver) + SQS (moto's server), and seeding.

Modules here may import pgserver, moto, boto3 and psycopg (through `dbops.adapters`), but
only inside functions: importing `dbops.sandbox.*` stays cheap so that `dbops --help` and
`dbops sandbox --help` never load them.

- `runtime`: start/stop/status of the two servers, the state file, the `sandbox` profile.
- `seed`: seeds the scenarios (`incident`, `clean`), fitted to the schema variant, and
  resets dbops' own state about the old rows; `plan` (the rows and messages a scenario
  plans), `scenarios` (the planners), `shape` (the schema as the catalog describes it).
- `demo`: `dbops demo` (up if needed, seed the incident, summarise what is wrong).
"""

from __future__ import annotations

from typing import Literal

PROFILE = "sandbox"
MAIN_QUEUE = "dbops-jobs"
DLQ = "dbops-jobs-dlq"
REGION = "us-east-1"

# The application schema variants the sandbox builds (`dbops sandbox up --schema`): the
# dbops migration set that creates each, and the database (in the sandbox's one cluster)
# that holds it. Each variant has its own database, so switching keeps the other's data.
SchemaName = Literal["standard", "legacy"]
DEFAULT_SCHEMA: SchemaName = "standard"
SCHEMA_MIGRATIONS: dict[str, Literal["app", "app_legacy"]] = {
    "standard": "app",
    "legacy": "app_legacy",
}
SCHEMA_DATABASES: dict[str, str] = {"standard": "postgres", "legacy": "dbops_legacy"}
