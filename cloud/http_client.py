"""A small HTTP client of the cloud API for command lines (`edgehouse models`, the demo's lifecycle drills).

Errors come back as :class:`ApiFailure` with the API's own field/message text, never as tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class ApiFailure(Exception):
    pass


@dataclass(frozen=True)
class Api:
    """An HTTP client of the cloud API with the caller's token."""

    url: str
    token: str | None
    timeout_s: float = 30.0

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
             content: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout_s) as client:
                resp = client.request(method, path, json=body, params=params, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiFailure(f"cannot reach {self.url}: {exc}") from None
        if resp.status_code >= 400:
            raise ApiFailure(_error_text(resp))
        return resp.json() if resp.content else None


def _error_text(resp: httpx.Response) -> str:
    try:
        details = resp.json()["detail"]
        text = "; ".join(f"{d['field']}: {d['message']}" if d.get("field") else d["message"] for d in details)
    except (ValueError, KeyError, TypeError):
        text = resp.text[:300]
    return f"HTTP {resp.status_code}: {text}"
