"""Ports: what services need from the outside world. Adapters implement them.

Services depend on these protocols only; `dbops.cli._deps` picks the adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field

Row = dict[str, Any]
# Called by a service at named points of a long operation; tests pause or kill it there
# (the CLI builds it in dbops.cli._checkpoint). None or a no-op in production.
Checkpoint = Callable[[str], None]


class Store(Protocol):
    """The database, reached through `dbops_*` SQL functions only.

    `call("dbops_x", {"p_a": 1})` runs `select * from dbops_x(p_a => 1)` over psycopg, or
    `rpc("dbops_x", {"p_a": 1})` over PostgREST; both return rows as dicts.
    """

    transport: str

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    def ping(self) -> float:
        """Round-trip time in milliseconds."""
        ...

    def close(self) -> None: ...


class SqlStore(Store, Protocol):
    """A store that can also run migration scripts (direct Postgres only)."""

    def execute_script(self, sql: str, *, transactional: bool = True) -> None: ...

    def applied_migrations(self) -> dict[str, str]: ...

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Raw, parameterised SQL (migrations only: catalog look-ups)."""
        ...

    def probe(self, script: str, queries: Sequence[str]) -> list[list[Row]]:
        """Run `script`, then each query, in one transaction that is rolled back."""
        ...


class QueueMessage(BaseModel):
    """One SQS message as received (body kept as the raw string)."""

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    message_attributes: dict[str, Any] = Field(default_factory=dict)


class OutgoingMessage(BaseModel):
    id: str
    body: str
    message_attributes: dict[str, Any] = Field(default_factory=dict)
    message_group_id: str | None = None
    message_deduplication_id: str | None = None
    delay_seconds: int | None = None
    # Message system attributes to send (SQS accepts only AWSTraceHeader), name -> value;
    # sent as MessageSystemAttributes of DataType String.
    system_attributes: dict[str, str] = Field(default_factory=dict)


class BatchResult(BaseModel):
    """Per-entry outcome of a batch call: never assume all-or-nothing."""

    successful: dict[str, str] = Field(default_factory=dict)  # entry id -> message id (or "")
    failed: dict[str, str] = Field(default_factory=dict)  # entry id -> "Code: message"


class Queues(Protocol):
    """SQS operations dbops uses. Queue arguments are names or URLs."""

    endpoint: str | None

    def resolve_url(self, queue: str) -> str: ...

    def list_queues(self, prefix: str | None = None) -> list[str]: ...

    def get_attributes(self, queue_url: str) -> dict[str, str]: ...

    def dead_letter_sources(self, queue_url: str) -> list[str]: ...

    def send_batch(self, queue_url: str, entries: Sequence[OutgoingMessage]) -> BatchResult: ...

    def receive(
        self,
        queue_url: str,
        *,
        max_messages: int = 10,
        visibility_timeout: int | None = None,
        wait_seconds: int = 0,
    ) -> list[QueueMessage]: ...

    def delete_batch(self, queue_url: str, receipt_handles: Mapping[str, str]) -> BatchResult: ...

    def change_visibility_batch(
        self, queue_url: str, receipt_handles: Mapping[str, str], timeout: int
    ) -> BatchResult: ...

    def purge(self, queue_url: str) -> None: ...

    def caller_identity(self) -> str | None: ...

    def oldest_message_age(self, queue_url: str) -> float | None: ...

    def start_move_task(
        self, source_arn: str, destination_arn: str | None, rate: int | None
    ) -> str: ...

    def list_move_tasks(self, source_arn: str) -> list[dict[str, Any]]: ...

    def cancel_move_task(self, task_handle: str) -> int: ...
