"""Model rollouts under load: swaps, rollback, a bad candidate and attacks, nothing dropped.

    python bench/rollout.py [--agents 4] [--rate 400] [--seed 1]

A private Mosquitto, the cloud (online signing key, rollout controller) and ``--agents``
gateway agents that trust the key. First a simulated day of the fleet's sensor telemetry
(``--warmup-days``, at up to ``--warmup-speed`` simulated seconds per second: a day in a minute, held
back while a scorer falls behind; the same devices and physics, other boots) warms every stream, so the detectors are past their first day
(``warmup_days``) and the gates compare alert rates of warm streams. Then the simulator publishes a
steady QoS 1 stream to all of them for the rest of the run, and, as an admin would:

1. a sound candidate is rolled out (canary in shadow, then every gateway): one swap per agent;
2. the rollout is rolled back by hand: another swap per agent, back to the baseline;
3. a deliberately worse candidate (alert threshold far too low) is rolled out: it must halt at
   the canary and roll back, never reaching a gateway of a later wave;
4. a sound candidate is rolled out again (one more swap per agent);
5. one agent, whose cloud traffic passes through a man in the middle, is fed every attack on
   the update path (unsigned, unknown key, tampered artifact and manifest, truncated download,
   replayed and downgraded releases, expired, new manifest with an old artifact, wrong tensor
   shapes, a disk that fills up during the download, a key rotation signed by a stranger):
   each must be refused with its reason while the agent keeps scoring on its model.

At the end every telemetry message the simulator sent (warm-up day included) must be stored, and
every stored reading scored exactly once (the agents' start-up warm-up excluded): ``dropped`` counts
what was not.

Last line: ``rollout: swaps=<n> dropped=<n> max_pause_ms=<x> attacks_refused=<n>/<m> bad_model_reached_waves=<n>``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import _stack
import httpx
from _attacker import Attack, Attacker
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.lifecycle import ModelAdmin, running_version, seen_versions, shipped_variant
from edgehouse_cli.stack import AgentProcess, CloudProcess
from firmware_sim.config import Fleet
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner
from firmware_sim.truth import Summary
from protocols import ARTIFACT_PATH, ArtifactRef, KeyRotation, ModelRelease, SignedRelease
from protocols.signing import Signer, generate_private_key_pem

DAY_MS = 86_400_000
GATES = {"min_readings": 300, "max_alert_rate_ratio": 2.0, "min_stage_duration_s": 1.0, "stage_timeout_s": 180}


def warmup_fleet(fleet: Fleet, days: float) -> Fleet:
    """The fleet's sensors (same ids, seed and physics; other boots), starting ``days`` and an hour before it."""
    data = fleet.config.model_dump(mode="json")
    data["start"] = (fleet.config.start - timedelta(days=days, hours=1)).isoformat()
    data["boot_salt"] = "warmup"
    for site in data["sites"]:
        for gw in site["gateways"]:
            gw["devices"] = [d for d in gw["devices"] if d["kind"] in _stack.SENSOR_KINDS]
    return Fleet.from_dict(data)


def backlogs(agents: list[AgentProcess]) -> list[float]:
    """Committed telemetry messages each agent's scorer has not read yet."""
    return [metrics(a).get("edgehouse_agent_inference_backlog_messages", 1) for a in agents]


def backlog(agents: list[AgentProcess]) -> float:
    return sum(backlogs(agents))


class Throttle:
    """The warm-up's ``on_publish``: every ``every`` publishes, the publisher thread waits while an agent's
    scorer is more than ``limit`` messages behind (it skips beyond ``models.queue_size``, 10,000), so an
    accelerated day is scored whole however busy the machine is."""

    def __init__(self, agents: list[AgentProcess], every: int = 500, limit: int = 3000) -> None:
        self.agents, self.every, self.limit = agents, every, limit
        self.waited_s = 0.0
        self._n = 0
        self._lock = threading.Lock()

    def __call__(self, _emission: object) -> None:
        with self._lock:
            self._n += 1
            if self._n % self.every:
                return
        start = time.monotonic()
        _stack.wait_until(lambda: max(backlogs(self.agents)) <= self.limit, 300, 0.2)
        with self._lock:
            self.waited_s += time.monotonic() - start


def warm_up(fleet: Fleet, broker: MosquittoBroker, agents: list[AgentProcess], days: float, speed: float,
            truth: Path) -> Summary:
    """Publish ``days`` of the fleet's sensor telemetry in accelerated time; return once the agents stored
    and scored all of it."""
    warm = warmup_fleet(fleet, days)
    runner = SimRunner(warm, broker.host, broker.port, ground_truth_path=truth, faults=FaultConfig(), speed=speed,
                       sim_seconds=days * 86_400, on_publish=Throttle(agents))
    runner.start()
    summary = runner.join(timeout=max(900.0, 10 * days * 86_400 / speed))  # the stream ends after the day
    if summary is None:
        runner.stop(force=True)
        raise RuntimeError("the warm-up day did not end in time")
    expected = summary.expected_stored.telemetry
    _stack.wait_until(lambda: sum(a.status()["stored"]["telemetry"] for a in agents) >= expected
                      and backlog(agents) == 0, 300, 0.5)
    return summary


def metrics(agent: AgentProcess) -> dict[str, float]:
    """The agent's Prometheus samples, ``name{labels}`` -> value."""
    text = httpx.get(f"http://127.0.0.1:{agent.http_port()}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def stored_readings(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        (n,) = conn.execute("SELECT coalesce(sum((SELECT count(*) FROM json_each(readings))), 0) FROM telemetry"
                            ).fetchone()
    finally:
        conn.close()
    return int(n)


class Watch:
    """Which anomaly model versions each agent's /status ever mentioned (running, pending, shadow)."""

    def __init__(self, agents: list[AgentProcess]) -> None:
        self.agents = agents
        self.seen: dict[str, set[int]] = {a.gateway_id: set() for a in agents}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for agent in self.agents:
                try:
                    self.seen[agent.gateway_id] |= seen_versions(agent.status(), "anomaly")
                except (httpx.HTTPError, OSError, ValueError):
                    continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --------------------------------------------------------------------------- attacks


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    task: str
    build: Callable[[], Attack]


class AttackLab:
    """Builds each attack against one gateway from the shipped model and the cloud's real documents."""

    def __init__(self, signer: Signer, gateway_id: str, agent: AgentProcess, old_release: dict[str, Any],
                 running: int, last_md: int) -> None:
        self.signer = signer
        self.stranger = Signer(generate_private_key_pem())
        self.gateway_id = gateway_id
        self.agent = agent
        self.old_release = old_release
        self.running = running
        self.md = last_md + 100  # above anything the cloud issued: only the attack itself can be wrong
        self.shipped, self.manifest = shipped_variant("anomaly")
        self._variants = 0

    def fresh(self) -> bytes:
        """Model bytes that load and that no earlier case used (one character of the converter's
        description differs), so the agent cannot reuse a local copy and must download them."""
        self._variants += 1
        out = self.shipped.replace(b"MLIR Converted.", b"MLIR Converted" + bytes([ord("A") + self._variants]))
        assert out != self.shipped and len(out) == len(self.shipped)
        return out

    def _release(self, data: bytes, *, version: int | None = None, manifest: dict[str, Any] | None = None,
                 created: int | None = None, expires: int | None = None, rollback: bool = False) -> ModelRelease:
        self.md += 1
        version = version if version is not None else self.running + 50
        man = dict(manifest if manifest is not None else self.manifest)
        man.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), version=version)
        now = int(time.time() * 1000)
        return ModelRelease(task="anomaly", name="anomaly", metadata_version=self.md, model_version=version,
                            created_ts=created if created is not None else now,
                            expires_ts=expires if expires is not None else now + DAY_MS,
                            artifact=ArtifactRef(sha256=man["sha256"], length=len(data)), rollback=rollback,
                            manifest=man)

    def _desired(self, doc: SignedRelease | dict[str, Any], rotations: tuple[dict[str, Any], ...] = ()
                 ) -> dict[str, Any]:
        release = doc if isinstance(doc, dict) else json.loads(doc.model_dump_json(by_alias=True))
        sha = release["signed"]["artifact"]["sha256"]
        return {"schema": "edgehouse.desired_models", "v": 1, "gateway_id": self.gateway_id,
                "generated_ts": int(time.time() * 1000),
                "models": [{"task": "anomaly", "release": release, "artifact_path": ARTIFACT_PATH.format(sha256=sha),
                            "mode": "active", "rollout_id": None}],
                "key_rotations": list(rotations)}

    def _serve(self, doc: SignedRelease | dict[str, Any], data: bytes | None = None) -> Attack:
        desired = self._desired(doc)
        artifacts = {}
        if data is not None:
            sha = desired["models"][0]["release"]["signed"]["artifact"]["sha256"]
            artifacts[ARTIFACT_PATH.format(sha256=sha)] = data
        return Attack(desired, artifacts)

    def cases(self) -> list[Case]:
        s = self.signer

        def unsigned() -> Attack:
            other = self.fresh()
            return self._serve(SignedRelease(signed=self._release(other), signatures=()), other)

        def unknown_key() -> Attack:
            other = self.fresh()
            return self._serve(self.stranger.sign_release(self._release(other)), other)

        def tampered_artifact() -> Attack:
            other = self.fresh()
            bad = bytearray(other)
            bad[len(bad) // 2] ^= 0xFF
            return self._serve(s.sign_release(self._release(other)), bytes(bad))

        def tampered_manifest() -> Attack:
            other = self.fresh()
            doc = json.loads(s.sign_release(self._release(other)).model_dump_json(by_alias=True))
            doc["signed"]["manifest"]["anomaly_defaults"]["threshold"] = 0.01
            return self._serve(doc, other)

        def truncated() -> Attack:
            other = self.fresh()
            return self._serve(s.sign_release(self._release(other)), other[: len(other) // 2])

        def replay() -> Attack:
            return self._serve(self.old_release)

        def downgrade() -> Attack:
            other = self.fresh()
            return self._serve(s.sign_release(self._release(other, version=self.running - 1)), other)

        def expired() -> Attack:
            other = self.fresh()
            now = int(time.time() * 1000)
            return self._serve(s.sign_release(self._release(other, created=now - 3 * DAY_MS, expires=now - DAY_MS)),
                               other)

        def old_artifact() -> Attack:
            other = self.fresh()
            return self._serve(s.sign_release(self._release(other)), self.shipped)

        def wrong_shapes() -> Attack:
            other = self.fresh()
            man = dict(self.manifest)
            man["inputs"] = [{**man["inputs"][0], "shape": [1, 30]}]
            return self._serve(s.sign_release(self._release(other, manifest=man)), other)

        def disk_full() -> Attack:
            # The staging file of this artifact lands on a device that is always full (ENOSPC).
            other = self.fresh()
            rel = self._release(other)
            part = self.agent.data_dir / "models" / "staging" / f"{rel.artifact.sha256}.part"
            part.parent.mkdir(parents=True, exist_ok=True)
            part.unlink(missing_ok=True)
            part.symlink_to("/dev/full")
            return self._serve(s.sign_release(rel), other)

        def rotation_by_stranger() -> Attack:
            rot = self.stranger.sign_rotation(KeyRotation(rotation_version=99, created_ts=int(time.time() * 1000),
                                                          add=(self.stranger.public_key,)))
            desired = self._desired(self.old_release, (json.loads(rot.model_dump_json(by_alias=True)),))
            return Attack(desired)

        return [
            Case("unsigned", "unsigned", "anomaly", unsigned),
            Case("signed by an unknown key", "unknown_key", "anomaly", unknown_key),
            Case("tampered artifact", "sha256_mismatch", "anomaly", tampered_artifact),
            Case("tampered manifest", "bad_signature", "anomaly", tampered_manifest),
            Case("truncated download", "length_mismatch", "anomaly", truncated),
            Case("replay of an old release", "replay", "anomaly", replay),
            Case("downgrade without a signed rollback", "downgrade", "anomaly", downgrade),
            Case("expired release", "expired", "anomaly", expired),
            Case("new manifest, old artifact", "sha256_mismatch", "anomaly", old_artifact),
            Case("wrong tensor shapes", "incompatible", "anomaly", wrong_shapes),
            Case("disk full during download", "disk_full", "anomaly", disk_full),
            Case("key rotation signed by an unknown key", "unknown_key", "keys", rotation_by_stranger),
        ]


def rejected(agent: AgentProcess, task: str, code: str) -> float:
    return metrics(agent).get(f'edgehouse_agent_model_update_rejected_total{{code="{code}",task="{task}"}}', 0.0)


def scored(agent: AgentProcess) -> float:
    return metrics(agent).get("edgehouse_agent_inference_scored_readings_total", 0.0)


def run_attacks(lab: AttackLab, attacker: Attacker, agent: AgentProcess, console: Console) -> tuple[int, int]:
    refused = 0
    cases = lab.cases()
    table = Table(title=f"attacks on {agent.gateway_id}")
    for col in ("attack", "expected", "refused", "still running", "scoring"):
        table.add_column(col)
    for case in cases:
        before = rejected(agent, case.task, case.code)
        version = running_version(agent.status(), "anomaly")
        scored_before = scored(agent)
        attacker.arm(case.build())
        ok = _stack.wait_until(lambda c=case, b=before: rejected(agent, c.task, c.code) > b, 20.0, 0.1)
        attacker.disarm()
        still = running_version(agent.status(), "anomaly") == version
        scoring = _stack.wait_until(lambda b=scored_before: scored(agent) > b, 10.0, 0.1)
        refused += ok and still and scoring
        table.add_row(case.name, case.code, "yes" if ok else "[red]NO[/]", "yes" if still else "[red]NO[/]",
                      "yes" if scoring else "[red]NO[/]")
    console.print(table)
    return refused, len(cases)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--rate", type=float, default=400.0, help="messages per second, all gateways together")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup-days", type=float, default=1.0, help="simulated days of sensor telemetry first")
    ap.add_argument("--warmup-speed", type=float, default=1440.0, help="simulated seconds per second of it")
    ap.add_argument("--keep", type=Path, default=None, help="keep stores, logs and ground truth here")
    args = ap.parse_args()
    console = Console()
    fleet = _stack.bench_fleet(gateways=args.agents, per_kind=2, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="eh-bench-rollout-") as tmp_s:
        tmp = args.keep or Path(tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        key = tmp / "release.pem"
        key.write_bytes(generate_private_key_pem())
        signer = Signer.from_file(key)
        broker = MosquittoBroker(data_dir=tmp / "broker")
        cloud = CloudProcess(workdir=tmp / "cloud", settings={"signing_key_file": str(key), "rollout_tick_s": "0.2"})
        agents: list[AgentProcess] = []
        attacker: Attacker | None = None
        runner: SimRunner | None = None
        watch: Watch | None = None
        broker.start()
        cloud.start()
        try:
            attacker = Attacker(cloud.url)
            attacker.start()
            for i, gw in enumerate(fleet.gateway_ids):
                agent = AgentProcess(
                    gateway_id=gw, site=fleet.site_of(gw), workdir=tmp / "agents", mqtt_host=broker.host,
                    mqtt_port=broker.port, filters=fleet.topic_filters(gw),
                    cloud_url=attacker.url if i == 0 else cloud.url,
                    cloud_token=cloud.register_gateway(gw, fleet.site_of(gw)),
                    extra={"updates": {"trusted_keys": [signer.public_key.public_key], "poll_interval_s": 0.5,
                                       "report_interval_s": 0.5, "min_free_bytes": 0, "download_retries": 1}},
                )
                agent.start()
                agents.append(agent)
            admin = ModelAdmin(cloud.url, cloud.admin_token)
            t0 = time.monotonic()
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                          console=console) as progress:
                phase = progress.add_task(f"warm-up: {args.warmup_days:g} simulated day(s) of sensor telemetry",
                                          total=7)
                warm = warm_up(fleet, broker, agents, args.warmup_days, args.warmup_speed, tmp / "truth-warmup.jsonl")
                progress.console.print(f"warm-up: {warm.expected_stored.telemetry:,} telemetry messages over "
                                       f"{args.warmup_days:g} simulated day(s), {time.monotonic() - t0:.0f} s")
                progress.update(phase, advance=1, description="the live stream: its first readings")
                before = {a.gateway_id: a.status()["stored"]["telemetry"] for a in agents}
                # No count: the stream runs until the phases are done (then stop(): its last chunk is sent).
                runner = SimRunner(fleet, broker.host, broker.port, ground_truth_path=tmp / "truth.jsonl",
                                   faults=FaultConfig(), rate=args.rate)
                runner.start()
                watch = Watch(agents)
                _stack.wait_until(lambda: all(a.status()["stored"]["telemetry"] >= before[a.gateway_id] + 300
                                              for a in agents), 300, 0.5)
                baseline = running_version(agents[0].status(), "anomaly")
                assert baseline is not None

                def roll_out_everywhere(version: int) -> None:
                    ro = admin.rollout("anomaly", version, canary_fraction=0.25, waves=[1.0], shadow=True,
                                       gates=GATES)
                    final = admin.wait_rollout(ro["rollout_id"], 300)
                    assert final["state"] == "completed", final["events"]
                    _stack.wait_until(lambda: all(running_version(a.status(), "anomaly") == version for a in agents),
                                      120, 0.2)

                progress.update(phase, advance=1, description="sound candidate: canary in shadow, then everyone")
                tflite, manifest = shipped_variant("anomaly")
                good = admin.upload("anomaly", tflite, manifest, parent_version=baseline)
                admin.promote("anomaly", good)
                roll_out_everywhere(good)
                old_release = admin.desired(agents[0].gateway_id)["models"][0]["release"]  # replayed later

                progress.update(phase, advance=1, description="rollback by hand")
                rollouts = admin._call("GET", "/api/v1/rollouts", params={"task": "anomaly"})
                admin.rollout_action(max(r["rollout_id"] for r in rollouts), "rollback", "bench: rollback under load")
                _stack.wait_until(lambda: all(running_version(a.status(), "anomaly") == baseline for a in agents),
                                  120, 0.2)

                progress.update(phase, advance=1, description="worse candidate: must stop at the canary")
                watch.seen = {a.gateway_id: set() for a in agents}
                tflite, manifest = shipped_variant("anomaly", anomaly_threshold=0.02)
                bad = admin.upload("anomaly", tflite, manifest, parent_version=baseline)
                admin.promote("anomaly", bad)
                ro = admin.rollout("anomaly", bad, canary_fraction=0.25, waves=[0.5, 1.0], shadow=True, gates=GATES)
                final = admin.wait_rollout(ro["rollout_id"], 300)
                canary = set(final["stages"][0]["gateways"])
                later = [a for a in agents if a.gateway_id not in canary]
                _stack.wait_until(lambda: all(bad not in seen_versions(a.status(), "anomaly") for a in agents), 60, 0.2)
                time.sleep(1.0)
                reached = sum(
                    1 for a in later
                    if bad in watch.seen[a.gateway_id]
                    or any(m["release"]["signed"]["model_version"] == bad for m in admin.desired(a.gateway_id)["models"])
                )
                console.print(f"worse candidate: rollout {final['state']} at stage {final['stage']} "
                              f"({final['reason']}); later-wave gateways that got it: {reached}")

                progress.update(phase, advance=1, description="a sound candidate again, everywhere")
                tflite, manifest = shipped_variant("anomaly")
                final_version = admin.upload("anomaly", tflite, manifest, parent_version=baseline)
                admin.promote("anomaly", final_version)
                roll_out_everywhere(final_version)

                progress.update(phase, advance=1, description="attacks on the update path")
                last_md = max(int(m["release"]["signed"]["metadata_version"])
                              for m in admin.desired(agents[0].gateway_id)["models"])
                lab = AttackLab(signer, agents[0].gateway_id, agents[0], old_release, final_version, last_md)
                refused, total = run_attacks(lab, attacker, agents[0], progress.console)

                progress.update(phase, advance=1, description="draining: every message stored and scored")
                runner.stop()
                summary = runner.join(timeout=120)
                assert summary is not None
                expected = summary.expected_stored.telemetry + warm.expected_stored.telemetry

                def drained() -> bool:
                    stored = sum(a.status()["stored"]["telemetry"] for a in agents)
                    return stored >= expected and backlog(agents) == 0

                _stack.wait_until(drained, 300, 0.5)
                time.sleep(1.5)  # the last pass after the backlog gauge reached 0
            samples = {a.gateway_id: metrics(a) for a in agents}
            stored_t = sum(a.status()["stored"]["telemetry"] for a in agents)
            watch.stop()
            rcs = [a.stop() for a in agents]
            swaps = sum(s.get('edgehouse_agent_model_swaps_total{task="anomaly"}', 0) for s in samples.values())
            pause = max(s.get('edgehouse_agent_model_swap_max_pause_seconds{task="anomaly"}', 0)
                        for s in samples.values())
            unscored = 0
            table = Table(title="per agent")
            for col in ("gateway", "stored readings", "scored", "warm-up", "skipped", "swaps", "max pause ms"):
                table.add_column(col, justify="right")
            swaps_key = 'edgehouse_agent_model_swaps_total{task="anomaly"}'
            pause_key = 'edgehouse_agent_model_swap_max_pause_seconds{task="anomaly"}'
            for a in agents:
                s = samples[a.gateway_id]
                readings = stored_readings(a.data_dir / "agent.db")
                done = s.get("edgehouse_agent_inference_scored_readings_total", 0) + s.get(
                    "edgehouse_agent_inference_warmup_readings_total", 0)
                skipped = s.get("edgehouse_agent_inference_dropped_messages_total", 0)
                unscored += abs(readings - int(done)) + int(skipped)
                table.add_row(a.gateway_id, f"{readings:,}", f"{int(done):,}",
                              f"{int(s.get('edgehouse_agent_inference_warmup_readings_total', 0)):,}",
                              f"{int(skipped)}", f"{int(s.get(swaps_key, 0))}", f"{1000 * s.get(pause_key, 0):.1f}")
            console.print(table)
            lost = max(0, expected - stored_t)
            console.print(f"simulator: {summary.published + warm.published:,} published (warm-up included), "
                          f"{expected:,} telemetry expected, "
                          f"{stored_t:,} stored; agents' exit codes {rcs}; {time.monotonic() - t0:.0f} s")
        finally:
            if watch is not None:
                watch.stop()
            if runner is not None and not runner.done:
                runner.stop(force=True)
            for a in agents:
                a.stop()
            if attacker is not None:
                attacker.stop()
            cloud.stop()
            broker.stop()
    print(f"rollout: swaps={int(swaps)} dropped={lost + unscored} max_pause_ms={1000 * pause:.1f} "
          f"attacks_refused={refused}/{total} bad_model_reached_waves={reached}")


if __name__ == "__main__":
    main()
