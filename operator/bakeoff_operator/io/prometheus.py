"""A thin Prometheus HTTP API client (instant queries) for the autoscaler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx

TIMEOUT_S: Final = 10.0


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or answered with an error."""


class Prometheus:
    def __init__(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """`data.result` of an instant query (vector results)."""
        try:
            response = self._client.get(f"{self.url}/api/v1/query", params={"query": promql})
        except httpx.HTTPError as err:
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer: {err}") from None
        try:
            body: Mapping[str, Any] = response.json()
        except ValueError:
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered HTTP {response.status_code}") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(
                f"Prometheus query {promql!r} failed: {body.get('error') or response.status_code}"
            )
        result = (body.get("data") or {}).get("result") or []
        return [dict(r) for r in result]

    def close(self) -> None:
        self._client.close()
