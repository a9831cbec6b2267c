"""The container image and the compose file (cloud/deploy), tested without a container engine: the compose
file's services, wiring, commands and settings are real; the Containerfile copies what exists, installs
extras that exist and runs an entry point that exists; the wheel it installs carries what the cloud needs;
the Mosquitto command edits the shipped config as intended; and every cloud service starts as the compose
file runs it (same commands, same settings, PostgreSQL), serving and solving a job across two replicas."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from cloud_testkit import ADMIN_TOKEN
from release_kit import REPO, scratch_database
from test_cloud_routes_api import problem_doc

from cloud.cli import app as cli_app
from cloud.settings import CloudSettings, load_settings
from edgehouse_cli.broker import free_port

DEPLOY = REPO / "cloud" / "deploy"
CONTAINERFILE = DEPLOY / "Containerfile"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
CLOUD = {name: svc for name, svc in SERVICES.items() if str(svc.get("image", "")).startswith("edgehouse-cloud:")}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SECRETS = {"POSTGRES_PASSWORD": "pg-" + "Xk29vLq7Rt", "EDGEHOUSE_ADMIN_TOKEN": ADMIN_TOKEN}
_VAR = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == "?":
            raise AssertionError(f"{name} unset: {arg}")
        return arg if op == "-" else ""

    return _VAR.sub(one, value).replace("$$", "$")


def service_env(name: str, env: dict[str, str] = SECRETS) -> dict[str, str]:
    return {k: interpolate(str(v), env) for k, v in (SERVICES[name].get("environment") or {}).items()}


def containerfile_stages() -> dict[str, list[str]]:
    """Instructions per stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)$", line, re.IGNORECASE)
        if found:
            current = stages.setdefault(found.group(2), [line])
        elif current is not None:
            current.append(line)
    return stages


# the compose file --------------------------------------------------------------------------------


def test_compose_runs_postgres_mosquitto_two_replicas_a_worker_and_one_controller() -> None:
    commands = {name: svc["command"] for name, svc in CLOUD.items()}
    assert set(SERVICES) == {"postgres", "mosquitto", "migrate", "api-1", "api-2", "worker", "controller"}
    assert sorted(n for n, c in commands.items() if c[0] == "serve") == ["api-1", "api-2"]
    assert [n for n, c in commands.items() if c[0] == "controller"] == ["controller"]  # exactly one place
    assert [n for n, c in commands.items() if c[0] == "worker"] == ["worker"]
    for name in CLOUD:
        env = service_env(name)
        assert env["EDGEHOUSE_CLOUD_EMBEDDED_WORKER"] == "false", name  # only the worker service runs jobs
        assert env["EDGEHOUSE_CLOUD_EMBEDDED_ROLLOUT_CONTROLLER"] == "false", name
        expected_migrate = "true" if name == "migrate" else "false"
        assert env["EDGEHOUSE_CLOUD_MIGRATE_ON_START"] == expected_migrate, name
        assert "@postgres:5432/" in env["EDGEHOUSE_CLOUD_DATABASE_URL"]
    # wiring: postgres healthy -> migrate completed -> everything else
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in set(CLOUD) - {"migrate"}:
        assert SERVICES[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert "healthcheck" in SERVICES["postgres"]
    for name, svc in SERVICES.items():
        for dep in svc.get("depends_on", {}):
            assert dep in SERVICES, (name, dep)
        for port in svc.get("ports", []):
            assert re.fullmatch(r"(127\.0\.0\.1:)?\d+:\d+", port), (name, port)
    host_ports = [p.rsplit(":", 2)[-2] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_compose_builds_mounts_and_variables_refer_to_what_exists() -> None:
    stages = containerfile_stages()
    for name, svc in CLOUD.items():
        build = svc["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == CONTAINERFILE
        assert build["target"] in stages, name
        assert svc["image"] == f"edgehouse-cloud:{build['target']}"
    assert CLOUD["worker"]["build"]["target"] == "worker" and CLOUD["api-1"]["build"]["target"] == "api"
    named = set(COMPOSE.get("volumes", {}))
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), (name, source)
            else:
                assert source in named, (name, source)
    used = set(_VAR.findall((DEPLOY / "compose.yaml").read_text()))
    documented = {line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert {name for name, _, _ in used} == documented == set(SECRETS)


def test_compose_commands_and_settings_are_real() -> None:
    commands: dict[str, Any] = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    for name, svc in CLOUD.items():
        command = [str(a) for a in svc["command"]]
        assert command[0] in commands, (name, command)
        commands[command[0]].make_context(command[0], command[1:])  # options and values parse
        env = service_env(name)
        for key in env:
            assert key.startswith("EDGEHOUSE_CLOUD_"), (name, key)
            assert key.removeprefix("EDGEHOUSE_CLOUD_").lower() in CloudSettings.model_fields, (name, key)
        saved = dict(os.environ)
        try:
            os.environ.update(env)
            settings = load_settings()  # the service's settings validate
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert settings.backend == "postgresql" and not settings.embedded_worker
    queues = CLOUD["worker"]["command"][CLOUD["worker"]["command"].index("--queues") + 1]
    assert queues.split(",") == ["route", "train"]


def test_the_mosquitto_command_edits_two_lines_of_the_shipped_config(tmp_path: Path) -> None:
    svc = SERVICES["mosquitto"]
    assert svc["image"].startswith("eclipse-mosquitto:2")
    mount = next(v for v in svc["volumes"] if v.startswith("."))
    source, target = mount.split(":")[:2]
    shipped = (DEPLOY / source).resolve()
    assert shipped == REPO / "edge_agent" / "broker" / "mosquitto.conf"
    script = interpolate(svc["command"][2], {})
    assert svc["command"][:2] == ["sh", "-c"] and script.endswith("&& exec mosquitto -c /tmp/mosquitto.conf")
    out = tmp_path / "mosquitto.conf"
    local = script.replace(target, str(shipped)).replace("/tmp/mosquitto.conf", str(out))
    subprocess.run(["sh", "-c", local.split(" && exec ")[0]], check=True, timeout=30)
    before, after = shipped.read_text().splitlines(), out.read_text().splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert changed == [("listener 1883 127.0.0.1", "listener 1883 0.0.0.0"),
                       ("persistence_location /var/lib/mosquitto/", "persistence_location /mosquitto/data/")]


# the image ---------------------------------------------------------------------------------------


def test_the_containerfile_installs_the_package_and_runs_a_real_entry_point() -> None:
    stages = containerfile_stages()
    assert list(stages) == ["wheel", "api", "worker"]
    assert stages["worker"][0].split()[1] == "api"
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    copied: list[str] = []
    for stage, lines in stages.items():
        for line in lines:
            if line.startswith("COPY") and "--from" not in line:
                copied += line.split()[1:-1]
            if "pip install" in line:
                wanted = re.search(r"\[([\w,]+)\]", line)
                assert wanted is not None and set(wanted.group(1).split(",")) <= extras, line
                assert {"cloud", "routing"} <= set(wanted.group(1).split(","))
                assert ("train" in wanted.group(1)) == (stage == "worker"), stage  # TensorFlow only in workers
    for source in copied:
        assert (REPO / source).exists(), source
    api = stages["api"]
    assert 'ENTRYPOINT ["edgehouse-cloud"]' in api and 'CMD ["serve"]' in api and 'CMD ["worker"]' in stages["worker"]
    assert PYPROJECT["project"]["scripts"]["edgehouse-cloud"] == "cloud.cli:app"
    assert any(line.startswith("USER edgehouse") for line in api)
    ignored = (DEPLOY / "Containerfile.dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1:] >= [f"!{s}" for s in copied]  # every copied path is let through


def test_the_wheel_the_image_installs_carries_the_cloud(tmp_path: Path) -> None:
    """Build the wheel from exactly what the Containerfile copies (no network: no build isolation)."""
    src = tmp_path / "src"
    src.mkdir()
    for line in containerfile_stages()["wheel"]:
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                path = REPO / source
                if path.is_dir():
                    shutil.copytree(path, src / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, src / source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir",
                    str(tmp_path / "wheels"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheels").glob("edgehouse-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted(p.name for p in (REPO / "cloud" / "db" / "migrations").glob("[0-9]*.py"))
    assert {f"cloud/db/migrations/{m}" for m in migrations} <= names
    for task in ("anomaly", "demand"):  # the shipped models the registry imports, and what retraining starts from
        assert {f"models/default/{task}.tflite", f"models/default/{task}.json"} <= names
    assert "models/default/anomaly.keras" in names
    assert {"cloud/cli.py", "cloud/train_worker.py", "cloud/routing/worker.py", "protocols/sync.py"} <= names
    assert not any(n.startswith(("edge_agent/", "firmware_sim/", "edgehouse_cli/")) for n in names)


# the services, started as the compose file starts them ------------------------------------------


class _Service:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        script = Path(sys.executable).with_name("edgehouse-cloud")
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "cloud"]
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*argv, *[str(a) for a in SERVICES[name]["command"]]], env=env, cwd=workdir,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}: {self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"{self.name}: no {text!r} in {self.log()[-3000:]}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc


@pytest.mark.postgres
def test_every_cloud_service_starts_as_the_compose_file_runs_it(tmp_path: Path) -> None:
    with scratch_database("postgres", tmp_path) as url:
        ports = {"api-1": free_port(), "api-2": free_port()}

        def env(name: str) -> dict[str, str]:
            out = {**os.environ, **service_env(name)}
            out["EDGEHOUSE_CLOUD_DATABASE_URL"] = url  # the compose host "postgres" is 127.0.0.1 here
            out["EDGEHOUSE_CLOUD_TRAIN_WORKDIR"] = str(tmp_path / f"train-{name}")
            if name in ports:  # one host for both replicas: own ports instead of own containers
                out |= {"EDGEHOUSE_CLOUD_HOST": "127.0.0.1", "EDGEHOUSE_CLOUD_PORT": str(ports[name])}
            return out

        early = _Service("api-1", env("api-1"), tmp_path)  # before the migrate service ran: refuses
        assert early.proc.wait(timeout=120) != 0
        assert "lacks the migrations 0001_initial" in early.log()
        migrate = _Service("migrate", env("migrate"), tmp_path)
        assert migrate.proc.wait(timeout=120) == 0, migrate.log()
        assert re.search(r"applied \d+ migrations in", migrate.log())

        running = [_Service(n, env(n), tmp_path) for n in ("api-1", "api-2", "controller")]
        stopped: dict[str, int] = {}
        try:
            running[2].wait_log("rollout controller running")
            for name, port in ports.items():
                deadline = time.monotonic() + 60
                while True:
                    assert running[0].proc.poll() is None and running[1].proc.poll() is None, name
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, f"{name} never healthy"
                    time.sleep(0.2)
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            one, two = (f"http://127.0.0.1:{ports[n]}" for n in ("api-1", "api-2"))
            job = httpx.post(f"{one}/api/v1/route-jobs?time_limit_s=0.5&engine=ortools", json=problem_doc(),
                             headers=admin, timeout=30).json()
            time.sleep(1.5)  # the replicas run no jobs themselves
            assert httpx.get(f"{two}/api/v1/route-jobs/{job['id']}", headers=admin).json()["status"] == "queued"
            running.append(_Service("worker", env("worker"), tmp_path))
            running[3].wait_log("serves route (2), train (1)")
            deadline = time.monotonic() + 60
            while (status := httpx.get(f"{two}/api/v1/route-jobs/{job['id']}", headers=admin).json())["status"] in (
                    "queued", "running"):
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            assert status["status"] == "done", status
            png = httpx.get(f"{one}/api/v1/route-jobs/{job['id']}/plot.png", headers=admin)
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        finally:
            for svc in running:
                stopped[svc.name] = svc.stop()
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the replicas end "by" it, having shut down
        assert stopped == {"api-1": -signal.SIGTERM, "api-2": -signal.SIGTERM, "controller": 0, "worker": 0}, stopped
        for svc in running[:2]:
            assert "Application shutdown complete" in svc.log(), svc.log()[-2000:]
