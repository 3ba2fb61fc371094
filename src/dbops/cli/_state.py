"""Per-invocation CLI state, in its own module so that `main` and `_deps` do not import
each other."""

from __future__ import annotations

from typing import Any


class State:
    """Per-invocation state shared by every command (kept on the root click context)."""

    def __init__(
        self,
        profile: str | None = None,
        debug: bool = False,
        env_file: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        no_headers: bool = False,
    ) -> None:
        self.profile = profile
        self.debug = debug
        self.env_file = env_file
        self.region = region
        self.endpoint_url = endpoint_url
        self.no_headers = no_headers
        self.cache: dict[str, Any] = {}

    @property
    def setting_flags(self) -> dict[str, Any]:
        return {"aws_region": self.region, "aws_endpoint_url_sqs": self.endpoint_url}
