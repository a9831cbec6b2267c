"""Model lifecycle drills over the cloud's admin API: candidates, promotion, rollouts, waiting.

Used by ``edgehouse demo`` (retrain → roll out → every gateway runs it), the staged-rollout
end-to-end test and ``bench/rollout.py``, so all three drive the registry exactly as an admin
would, over HTTP with the admin token.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud.http_client import Api
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

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One API call with the admin token (the CLI's client: errors raise ``ApiFailure``)."""
        return Api(self.url, self.token, self.timeout_s).call(method, path, body=json, params=params)

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


@dataclass
class DrillResult:
    """What a retrain-and-roll-out drill did, with its timings (seconds since the train request)."""

    state: str = "waiting"
    job_id: int | None = None
    candidate_version: int | None = None
    gate_passed: bool | None = None
    gate_reason: str | None = None
    rollout_id: int | None = None
    rollout_state: str | None = None
    trained_s: float | None = None
    everywhere_s: float | None = None
    error: str | None = None

    @property
    def line(self) -> str:
        """One line for a live view or a summary."""
        if self.error:
            return f"failed: {self.error}"
        parts = [self.state]
        if self.trained_s is not None:
            parts.append(f"trained v{self.candidate_version} in {self.trained_s:.0f} s")
        if self.gate_passed is False:
            parts.append(f"quality gate failed ({self.gate_reason}); the fleet keeps its model")
        if self.everywhere_s is not None:
            parts.append(f"on every gateway {self.everywhere_s:.0f} s after the train request")
        return "; ".join(parts)


class RetrainDrill:
    """Retrain the anomaly model from the synced data, promote it if it passes its quality gate,
    roll it out (canary in shadow, then everyone) and time it until every gateway runs it.

    Runs on its own thread: :meth:`start`, :meth:`join`; :attr:`result` is readable meanwhile.
    """

    def __init__(self, admin: ModelAdmin, gateways: Callable[[], dict[str, dict[str, Any]]],
                 timeout_s: float = 600.0) -> None:
        self._admin = admin
        self._gateways = gateways  # gateway id -> its agent's /status
        self._timeout_s = timeout_s
        self.result = DrillResult()
        self._thread = threading.Thread(target=self._run, name="retrain-drill", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> DrillResult:
        self._thread.join(timeout_s)
        return self.result

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def _run(self) -> None:
        r = self.result
        try:
            t0 = time.monotonic()
            r.state = "training"
            job = self._admin.train("anomaly")
            r.job_id = int(job["job_id"])

            def progress(j: dict[str, Any]) -> None:
                r.state = f"training {100 * float(j.get('progress') or 0):.0f}% ({j.get('message') or j['state']})"

            job = self._admin.wait_job(r.job_id, self._timeout_s, progress)
            r.trained_s = time.monotonic() - t0
            if job["state"] != "succeeded":
                r.error = f"training job {r.job_id} {job['state']}: {job.get('error')}"
                return
            r.candidate_version = int(job["candidate_version"])
            r.gate_passed, r.gate_reason = job.get("gate_passed"), job.get("gate_reason")
            if r.gate_passed is False:
                r.state = "not promoted"
                return
            r.state = "promoting"
            self._admin.promote("anomaly", r.candidate_version)
            rollout = self._admin.rollout("anomaly", r.candidate_version, canary_fraction=0.5, waves=[1.0],
                                          shadow=True, gates={"min_readings": 300, "min_stage_duration_s": 2.0})
            r.rollout_id = int(rollout["rollout_id"])

            def stage(s: dict[str, Any]) -> None:
                r.rollout_state = s["state"]
                r.state = f"rollout {s['state']}: stage {s['stage'] + 1}/{s['n_stages']} ({s['phase']})"

            final = self._admin.wait_rollout(r.rollout_id, self._timeout_s, on_progress=stage)
            if final["state"] != "completed":  # the gates did their job: an outcome, not an error
                r.state = f"rollout {r.rollout_id} {final['state']}: {final.get('reason')}"
                return
            version = r.candidate_version
            deadline = time.monotonic() + self._timeout_s
            while not all(running_version(st, "anomaly") == version for st in self._gateways().values()):
                if time.monotonic() > deadline:
                    r.error = f"not every gateway runs v{version} after {self._timeout_s} s"
                    return
                time.sleep(0.25)
            r.everywhere_s = time.monotonic() - t0
            r.state = f"v{version} runs on every gateway"
        except Exception as exc:  # noqa: BLE001 - the drill reports, the demo decides
            r.error = f"{type(exc).__name__}: {exc}"
