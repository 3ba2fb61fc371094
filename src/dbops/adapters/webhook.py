"""Incoming webhooks (Slack) over httpx, imported lazily.

The URL is a secret (it is the credential): it is kept private here and never appears
in an error message, a repr or a log line.
"""

from __future__ import annotations

from typing import Any

from dbops.errors import RemoteError


class WebhookNotifier:
    """Implements `dbops.services.slack.Notifier` by POSTing JSON to a webhook URL."""

    def __init__(self, url: str, *, name: str = "Slack webhook", timeout: float = 10) -> None:
        self._url = url
        self.name = name
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, url='****')"

    def _scrub(self, text: str) -> str:
        """One line without the URL, nor its path or token (a gateway's error page may
        echo the request path: for Slack, /services/T.../B.../<token>)."""
        from urllib.parse import urlsplit

        text = " ".join(text.split())
        if not self._url:
            return text
        try:
            parts = urlsplit(self._url)
            pieces = {self._url, parts.path, parts.path.rstrip("/").rsplit("/", 1)[-1], parts.query}
        except ValueError:
            pieces = {self._url}
        for piece in sorted(pieces, key=len, reverse=True):
            if len(piece) >= 6:
                text = text.replace(piece, "****")
        return text

    def send(self, payload: dict[str, Any]) -> None:
        import httpx

        try:
            response = httpx.post(
                self._url, json=payload, timeout=self._timeout, follow_redirects=False
            )
        except httpx.InvalidURL:
            raise RemoteError(
                f"{self.name}: the configured URL is not valid", hint="check SLACK_WEBHOOK_URL"
            ) from None
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"{self.name} unreachable ({type(exc).__name__})",
                hint="check SLACK_WEBHOOK_URL and the network",
            ) from None
        if response.status_code >= 300:
            detail = self._scrub(response.text or "")[:80]
            raise RemoteError(
                f"{self.name} returned HTTP {response.status_code}"
                + (f": {detail}" if detail else ""),
                hint="check SLACK_WEBHOOK_URL (revoked or mistyped webhooks return 403/404)",
            )
