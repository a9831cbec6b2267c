"""Model lifecycle drills over the cloud's admin API: candidates, promotion, rollouts, waiting.

Used by ``edgehouse demo`` (retrain → roll out → every gateway runs it), the staged-rollout
end-to-end test and ``bench/rollout.py``, so all three drive the registry exactly as an admin
would, over HTTP with the admin token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from models.manifest import manifest_path_for
from models.runtime import default_model_path

#: Rollout states after which nothing changes any more without an admin.
FINAL_ROLLOUT_STATES = frozenset({"completed", "rolled_back", "aborted", "halted"})


def shipped_variant(task: str, anomaly_threshold: float | None = None) -> tuple[bytes, dict[str, Any]]:
    """The shipped model's bytes and manifest, optionally with another alert threshold.

    Same network, different scorer defaults: a new model version for the registry (its version
    number is assigned there). A threshold far below the shipped one makes a deliberately worse
    candidate (it alerts on noise).
    """
    path = default_model_path(task)
    manifest: dict[str, Any] = json.loads(manifest_path_for(path).read_text())
    if anomaly_threshold is not None:
        defaults = dict(manifest.get("anomaly_defaults") or {})
        defaults["threshold"] = anomaly_threshold
        defaults["threshold_source"] = f"set to {anomaly_threshold} by a lifecycle drill"
        manifest["anomaly_defaults"] = defaults
    return path.read_bytes(), manifest


@dataclass
class ModelAdmin:
    """The model-registry and rollout endpoints of one cloud, as its admin."""

    url: str
    token: str
    timeout_s: float = 30.0

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=self.timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._client() as client:
            resp = client.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def upload(self, task: str, tflite: bytes, manifest: dict[str, Any], *, parent_version: int | None = None,
               metrics: dict[str, float] | None = None) -> int:
        """Register a candidate; its assigned model version."""
        body = {"tflite_b64": base64.b64encode(tflite).decode(), "manifest": manifest,
                "metrics": metrics or {}, "parent_version": parent_version}
        return int(self._call("POST", f"/api/v1/models/{task}/versions", json=body)["model_version"])

    def promote(self, task: str, version: int, force: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/models/{task}/versions/{version}/promote",
                                            json={"force": force})
        return result

    def versions(self, task: str) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v1/models", params={"task": task}))

    def rollout(self, task: str, version: int, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/rollouts",
                                            json={"task": task, "model_version": version, **options})
        return result

    def rollout_status(self, rollout_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/rollouts/{rollout_id}")
        return result

    def rollout_action(self, rollout_id: int, action: str, reason: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/rollouts/{rollout_id}/{action}",
                                            json={"reason": reason})
        return result

    def train(self, task: str, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/models/train", json={"task": task, **options})
        return result

    def job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/models/jobs/{job_id}")
        return result

    def desired(self, gateway_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/gateways/{gateway_id}/models/desired")
        return result

    def wait_job(self, job_id: int, timeout_s: float,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(0.5)

    def wait_rollout(self, rollout_id: int, timeout_s: float, states: frozenset[str] = FINAL_ROLLOUT_STATES,
                     on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.rollout_status(rollout_id)
            if on_progress is not None:
                on_progress(status)
            if status["state"] in states:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"rollout {rollout_id} still {status['state']} (stage {status['stage']}) "
                                   f"after {timeout_s} s")
            time.sleep(0.25)


def running_version(agent_status: dict[str, Any], task: str) -> int | None:
    """The model version an agent's ``/status`` says it runs for ``task``."""
    line = (agent_status.get("models") or {}).get(task) or {}
    version = line.get("version")
    return int(version) if version is not None else None


def seen_versions(agent_status: dict[str, Any], task: str) -> set[int]:
    """Every version an agent's ``/status`` mentions for ``task`` (running, pending, shadow)."""
    line = (agent_status.get("models") or {}).get(task) or {}
    return {int(line[k]) for k in ("version", "pending_version", "shadow_version") if line.get(k) is not None}
