"""SQS through boto3: standard retries, timeouts, endpoint override, per-entry batch results."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import botocore.hooks
import botocore.loaders
import botocore.session
from botocore.config import Config

from dbops.errors import ConfigError, NotFoundError, RemoteError
from dbops.names import queue_name
from dbops.ports import BatchResult, OutgoingMessage, QueueMessage
from dbops.redaction import MASK, strip_userinfo

T = TypeVar("T")


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


@functools.cache
def _builtin_event_hooks() -> botocore.hooks.HierarchicalEmitter:
    """botocore's built-in event handlers, registered once per process.

    A new session registers about 200 of them, inspecting each handler's signature; a
    copy of a registered set is the same set (module-level functions, no session state)
    at a fraction of the cost.
    """
    hooks = botocore.hooks.HierarchicalEmitter()
    botocore.session.Session(event_hooks=hooks)  # registers the built-in handlers in hooks
    return hooks


def _boto_session(**kwargs: Any) -> boto3.session.Session:
    """A boto3 session whose service models come from one loader per process.

    Each new botocore session otherwise parses the SQS model and the endpoint data again
    (about 10x the cost of a client from a warm session). The models are read-only files,
    so sharing the parsed copies is safe; credentials and config stay per session. It
    matters wherever one process builds several sessions: `runbook run`, `monitor`, tests.
    """
    loader = _shared_loader()
    core = botocore.session.Session(
        event_hooks=copy.copy(_builtin_event_hooks()), include_builtin_handlers=False
    )
    core.register_component("data_loader", loader)
    session = boto3.session.Session(botocore_session=core, **kwargs)
    # boto3 appends its own data folder to the loader's search path on every session.
    loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return session


_NOT_FOUND = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
}


def translate_error(exc: Exception, what: str) -> Exception:
    """One-line DbopsError for a botocore failure; never includes credentials."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip()
        if code in _NOT_FOUND or "NonExistentQueue" in code:
            return NotFoundError(f"{what}: queue does not exist", hint="check the queue name/URL")
        if code in {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId"}:
            return RemoteError(f"{what}: access denied ({code})", hint="check AWS credentials")
        return RemoteError(f"{what}: {code}: {message}".rstrip(": "))
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(
            f"{what}: no AWS credentials found",
            hint="set AWS_PROFILE or run `aws sso login`; dbops never stores AWS keys",
        )
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return ConfigError(f"{what}: no AWS region configured", hint="set AWS_REGION")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return RemoteError(f"{what}: invalid request: {' '.join(str(exc).split())}")
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError
    ):
        return RemoteError(f"{what}: cannot reach SQS endpoint ({type(exc).__name__})")
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return ConfigError(f"{what}: AWS profile not found: {' '.join(str(exc).split())}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return RemoteError(f"{what}: {' '.join(str(exc).split())}")
    return exc


def _guard(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate_error(exc, what) from None


def _batch_result(response: Mapping[str, Any], id_key: str | None = "MessageId") -> BatchResult:
    result = BatchResult()
    for entry in response.get("Successful", []) or []:
        result.successful[entry["Id"]] = entry.get(id_key, "") if id_key else ""
    for entry in response.get("Failed", []) or []:
        result.failed[entry["Id"]] = f"{entry.get('Code', 'Error')}: {entry.get('Message', '')}"
    return result


class SqsQueues:
    def __init__(
        self,
        *,
        region: str | None,
        endpoint: str | None,
        profile: str | None = None,
        sandbox: bool = False,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_attempts: int = 5,
        max_wait_seconds: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        # A cap on every receive's long poll (settings.sqs_long_poll_seconds).
        self._max_wait = max_wait_seconds
        self._region = region or "us-east-1"
        self._profile = profile
        self._sandbox = sandbox
        self._config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=32,
        )
        self._url_cache: dict[str, str] = {}

    @functools.cached_property
    def _session(self) -> boto3.session.Session:
        if self._sandbox:
            # The embedded sandbox accepts any credentials; these are not secrets.
            return _boto_session(
                aws_access_key_id="sandbox",
                aws_secret_access_key="sandbox",
                region_name=self._region,
            )
        return _guard(
            "AWS session",
            lambda: _boto_session(profile_name=self._profile, region_name=self._region),
        )

    @functools.cached_property
    def client(self) -> Any:
        try:
            return self._session.client("sqs", endpoint_url=self.endpoint, config=self._config)
        except ValueError:  # botocore: "Invalid endpoint: <url>" (an empty or schemeless URL)
            shown = strip_userinfo(self.endpoint or "")
            if "@" in shown and f"{MASK}@" not in shown:  # schemeless: user:pw@host
                shown = f"{MASK}@{shown.rsplit('@', 1)[1]}"
            raise ConfigError(
                f"invalid SQS endpoint URL {shown!r}",
                hint="use http(s)://host:port in AWS_ENDPOINT_URL_SQS or --endpoint-url",
            ) from None

    def _other_client(self, service: str) -> Any:
        # A custom SQS endpoint (sandbox, LocalStack) serves STS/CloudWatch too, if at all.
        quick = Config(
            retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5
        )
        return self._session.client(service, endpoint_url=self.endpoint, config=quick)  # type: ignore[call-overload]

    # -- queues ----------------------------------------------------------------
    def resolve_url(self, queue: str) -> str:
        if queue.startswith(("http://", "https://")):
            return queue
        if queue not in self._url_cache:
            response = _guard(f"queue {queue}", lambda: self.client.get_queue_url(QueueName=queue))
            self._url_cache[queue] = response["QueueUrl"]
        return self._url_cache[queue]

    def list_queues(self, prefix: str | None = None) -> list[str]:
        urls: list[str] = []
        kwargs: dict[str, Any] = {"MaxResults": 1000}
        if prefix:
            kwargs["QueueNamePrefix"] = prefix
        while True:
            response = _guard("list queues", lambda: self.client.list_queues(**kwargs))
            urls.extend(response.get("QueueUrls", []) or [])
            token = response.get("NextToken")
            if not token:
                return urls
            kwargs["NextToken"] = token

    def get_attributes(self, queue_url: str) -> dict[str, str]:
        response = _guard(
            f"queue {queue_name(queue_url)}",
            lambda: self.client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"]),
        )
        return dict(response.get("Attributes", {}))

    def dead_letter_sources(self, queue_url: str) -> list[str]:
        response = _guard(
            f"queue {queue_name(queue_url)}",
            lambda: self.client.list_dead_letter_source_queues(QueueUrl=queue_url),
        )
        return list(response.get("queueUrls", []) or [])

    # -- messages --------------------------------------------------------------
    def send_batch(self, queue_url: str, entries: Sequence[OutgoingMessage]) -> BatchResult:
        if not entries:
            return BatchResult()
        payload = []
        for e in entries:
            item: dict[str, Any] = {"Id": e.id, "MessageBody": e.body}
            if e.message_attributes:
                item["MessageAttributes"] = e.message_attributes
            if e.message_group_id:
                item["MessageGroupId"] = e.message_group_id
            if e.message_deduplication_id:
                item["MessageDeduplicationId"] = e.message_deduplication_id
            if e.delay_seconds is not None:
                item["DelaySeconds"] = e.delay_seconds
            if e.system_attributes:
                item["MessageSystemAttributes"] = {
                    name: {"StringValue": value, "DataType": "String"}
                    for name, value in e.system_attributes.items()
                }
            payload.append(item)
        response = _guard(
            f"send to {queue_name(queue_url)}",
            lambda: self.client.send_message_batch(QueueUrl=queue_url, Entries=payload),
        )
        return _batch_result(response)

    def receive(
        self,
        queue_url: str,
        *,
        max_messages: int = 10,
        visibility_timeout: int | None = None,
        wait_seconds: int = 0,
    ) -> list[QueueMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max(1, min(10, max_messages)),
            "WaitTimeSeconds": wait_seconds
            if self._max_wait is None
            else min(wait_seconds, self._max_wait),
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        response = _guard(
            f"receive from {queue_name(queue_url)}", lambda: self.client.receive_message(**kwargs)
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m.get("Body", ""),
                md5_of_body=m.get("MD5OfBody"),
                attributes=dict(m.get("Attributes", {}) or {}),
                message_attributes=dict(m.get("MessageAttributes", {}) or {}),
            )
            for m in response.get("Messages", []) or []
        ]

    def delete_batch(self, queue_url: str, receipt_handles: Mapping[str, str]) -> BatchResult:
        if not receipt_handles:
            return BatchResult()
        entries = [{"Id": k, "ReceiptHandle": v} for k, v in receipt_handles.items()]
        response = _guard(
            f"delete from {queue_name(queue_url)}",
            lambda: self.client.delete_message_batch(QueueUrl=queue_url, Entries=entries),
        )
        return _batch_result(response, id_key=None)

    def change_visibility_batch(
        self, queue_url: str, receipt_handles: Mapping[str, str], timeout: int
    ) -> BatchResult:
        if not receipt_handles:
            return BatchResult()
        entries = [
            {"Id": k, "ReceiptHandle": v, "VisibilityTimeout": timeout}
            for k, v in receipt_handles.items()
        ]
        response = _guard(
            f"change visibility on {queue_name(queue_url)}",
            lambda: self.client.change_message_visibility_batch(
                QueueUrl=queue_url, Entries=entries
            ),
        )
        return _batch_result(response, id_key=None)

    def purge(self, queue_url: str) -> None:
        _guard(
            f"purge {queue_name(queue_url)}", lambda: self.client.purge_queue(QueueUrl=queue_url)
        )

    # -- identity, metrics, move tasks -------------------------------------------
    def caller_identity(self) -> str | None:
        """The caller's ARN, or None when the endpoint cannot tell (never raises)."""
        try:
            return str(self._other_client("sts").get_caller_identity()["Arn"])
        except Exception:
            return None

    def oldest_message_age(self, queue_url: str) -> float | None:
        """CloudWatch ApproximateAgeOfOldestMessage (max over 5 min), None if unavailable."""
        try:
            now = datetime.now(UTC)
            response = self._other_client("cloudwatch").get_metric_statistics(
                Namespace="AWS/SQS",
                MetricName="ApproximateAgeOfOldestMessage",
                Dimensions=[{"Name": "QueueName", "Value": queue_name(queue_url)}],
                StartTime=now - timedelta(minutes=5),
                EndTime=now,
                Period=60,
                Statistics=["Maximum"],
            )
        except Exception:
            return None
        points = sorted(response.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1]["Maximum"]) if points else None

    def start_move_task(
        self, source_arn: str, destination_arn: str | None, rate: int | None
    ) -> str:
        kwargs: dict[str, Any] = {"SourceArn": source_arn}
        if destination_arn:
            kwargs["DestinationArn"] = destination_arn
        if rate:
            kwargs["MaxNumberOfMessagesPerSecond"] = rate
        response = _guard(
            "start message move task", lambda: self.client.start_message_move_task(**kwargs)
        )
        return str(response["TaskHandle"])

    def list_move_tasks(self, source_arn: str) -> list[dict[str, Any]]:
        response = _guard(
            "list message move tasks",
            lambda: self.client.list_message_move_tasks(SourceArn=source_arn, MaxResults=10),
        )
        return list(response.get("Results", []) or [])

    def cancel_move_task(self, task_handle: str) -> int:
        response = _guard(
            "cancel message move task",
            lambda: self.client.cancel_message_move_task(TaskHandle=task_handle),
        )
        return int(response.get("ApproximateNumberOfMessagesMoved", 0))

    def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> str:
        """For the sandbox and tests."""
        response = _guard(
            f"create queue {name}",
            lambda: self.client.create_queue(QueueName=name, Attributes=dict(attributes or {})),
        )
        return str(response["QueueUrl"])
