"""``edgehouse models``: the model registry, retraining, signing and rollouts over the cloud's HTTP API.

Every command talks to a running cloud (``--url``/``EDGEHOUSE_URL``) with an admin token
(``--token``/``EDGEHOUSE_TOKEN``), except ``keygen``, which only writes a key file. ``sign`` and
``rotate-key`` sign on this machine: the private key never leaves it.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cloud.clock import now_ms
from cloud.http_client import Api, ApiFailure
from protocols.model_update import KeyRotation, ModelRelease
from protocols.signing import Signer, generate_private_key_pem

app = typer.Typer(help="Model registry, retraining, signing and staged rollouts.", no_args_is_help=True,
                  add_completion=False)

_FINISHED_JOB = frozenset({"succeeded", "failed", "cancelled"})


def _out() -> Console:
    return Console()


def _err() -> Console:
    return Console(stderr=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    _err().print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _api(ctx: typer.Context) -> Api:
    api = ctx.obj
    assert isinstance(api, Api)
    return api


def _run(ctx: typer.Context, method: str, path: str, **kw: Any) -> Any:
    try:
        return _api(ctx).call(method, path, **kw)
    except ApiFailure as exc:
        _fail(str(exc))


def _ts(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _json(data: Any) -> None:
    _out().print_json(json.dumps(data))


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="EDGEHOUSE_URL", help="Cloud API base URL")] = "http://127.0.0.1:8080",
    token: Annotated[str | None, typer.Option(envvar="EDGEHOUSE_TOKEN", help="Admin bearer token")] = None,
) -> None:
    """Talk to the cloud at --url with --token (or EDGEHOUSE_URL / EDGEHOUSE_TOKEN)."""
    ctx.obj = Api(url.rstrip("/"), token)


# registry --------------------------------------------------------------------------------------


@app.command("list")
def list_models(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option(help="anomaly, demand or device_anomaly")] = None,
    status: Annotated[str | None, typer.Option(help="candidate, promoted, rejected or retired")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every model version with its status."""
    params = {k: v for k, v in {"task": task, "status": status}.items() if v is not None}
    rows = _run(ctx, "GET", "/api/v1/models", params=params)
    if as_json:
        _json(rows)
        return
    table = Table("task", "version", "status", "scope", "created", "by", "gate", "promoted by")
    for m in rows:
        gate = "-" if m["gate_passed"] is None else ("passed" if m["gate_passed"] else "failed")
        table.add_row(m["task"], str(m["model_version"]), m["status"], m["scope"], _ts(m["created_ts"]),
                      m["created_by"], gate, m["promoted_by"] or "-")
    _out().print(table)


@app.command()
def show(ctx: typer.Context, task: str, version: int,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """One version: manifest summary, metrics, data range, parent, promotion and releases."""
    m = _run(ctx, "GET", f"/api/v1/models/{task}/versions/{version}")
    if as_json:
        _json(m)
        return
    _out().print(f"[bold]{m['task']} v{m['model_version']}[/] {m['status']} ({m['scope']}), sha256 {m['sha256']}, "
              f"{m['size_bytes']} bytes", highlight=False)
    _out().print(f"created {_ts(m['created_ts'])} by {m['created_by']}; parent {m['parent_version'] or '-'}; "
              f"data {_ts(m['data_from_ts'])} .. {_ts(m['data_to_ts'])}", highlight=False)
    if m["gate_passed"] is not None:
        _out().print(f"quality gate: {'passed' if m['gate_passed'] else 'failed'} ({m['gate_reason']})", highlight=False)
    if m["promoted_by"]:
        _out().print(f"promoted {_ts(m['promoted_ts'])} by {m['promoted_by']}; baseline of: "
                  f"{', '.join(m['baseline_of']) or '-'}", highlight=False)
    for name, value in sorted(m["metrics"].items()):
        _out().print(f"  {name} = {value:g}", highlight=False)
    table = Table("metadata", "rollback", "held", "created", "expires", "keys")
    for r in m["releases"]:
        table.add_row(str(r["metadata_version"]), str(r["rollback"]), str(r["held"]), _ts(r["created_ts"]),
                      _ts(r["expires_ts"]), ", ".join(k[:12] for k in r["keyids"]))
    _out().print(table)
    if m["pending_signatures"]:
        _out().print(f"awaiting offline signature: metadata versions {m['pending_signatures']} "
                  "(run `edgehouse models sign --key FILE`)", highlight=False)


@app.command()
def train(
    ctx: typer.Context,
    task: str,
    scope: Annotated[str, typer.Option(help='"fleet" or "site:<site>"')] = "fleet",
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the cloud's setting)")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job until it ends")] = True,
    poll_s: Annotated[float, typer.Option("--poll", help="Seconds between progress polls")] = 1.0,
) -> None:
    """Start a retraining job and follow it with a progress bar."""
    body: dict[str, Any] = {"task": task, "scope": scope}
    if epochs is not None:
        body["epochs"] = epochs
    if seed is not None:
        body["seed"] = seed
    job = _run(ctx, "POST", "/api/v1/models/train", body=body)
    job_id = job["job_id"]
    if not wait:
        _out().print(job_id)
        return
    with Progress(TextColumn("job {task.fields[job]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=_err()) as progress:
        bar = progress.add_task(job["state"], total=1.0, job=job_id)
        while job["state"] not in _FINISHED_JOB:
            time.sleep(poll_s)
            job = _run(ctx, "GET", f"/api/v1/models/jobs/{job_id}")
            progress.update(bar, completed=float(job.get("progress") or 0.0),
                            description=str(job.get("message") or job["state"]))
    if job["state"] != "succeeded":
        _fail(f"job {job_id} {job['state']}: {job.get('error') or job.get('message') or ''}")
    gate = job.get("gate_passed")
    _out().print(f"job {job_id} succeeded: {task} candidate version {job['candidate_version']}, quality gate "
              f"{'passed' if gate else 'failed'} ({job.get('gate_reason')})", highlight=False)


@app.command()
def promote(ctx: typer.Context, task: str, version: int,
            force: Annotated[bool, typer.Option(help="Promote although the quality gate failed")] = False) -> None:
    """Approve a candidate: signed now (online key) or queued for `edgehouse models sign`."""
    m = _run(ctx, "POST", f"/api/v1/models/{task}/versions/{version}/promote", body={"force": force})
    signed = [r["metadata_version"] for r in m["releases"] if not r["held"]]
    if signed:
        _out().print(f"{task} v{version} promoted; release metadata_version {signed[-1]} signed", highlight=False)
    else:
        _out().print(f"{task} v{version} promoted; releases await an offline signature "
                  f"(metadata versions {m['pending_signatures']}): run `edgehouse models sign --key FILE`",
                  highlight=False)


# rollouts --------------------------------------------------------------------------------------


def _waves(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise typer.BadParameter("give comma-separated fractions, e.g. 0.5,1.0") from None


@app.command()
def rollout(
    ctx: typer.Context,
    task: str,
    version: int,
    scope: Annotated[str | None, typer.Option(help='"fleet" or "site:<site>" (default: the version\'s)')] = None,
    group: Annotated[str | None, typer.Option(help="Only the gateways of this group")] = None,
    canary: Annotated[float, typer.Option(help="Fraction of the gateways in the canary stage")] = 0.1,
    waves: Annotated[str, typer.Option(help="Cumulative fractions after the canary")] = "0.5,1.0",
    shadow: Annotated[bool, typer.Option("--shadow/--no-shadow", help="Shadow phase in each stage")] = True,
    min_readings: Annotated[int, typer.Option(help="Readings before the anomaly gate decides")] = 500,
    max_alert_rate_ratio: Annotated[float, typer.Option(help="Candidate/baseline alert rate bound")] = 2.0,
    max_wape_ratio: Annotated[float, typer.Option(help="Candidate/baseline demand WAPE bound")] = 1.1,
    min_actual_units: Annotated[float, typer.Option(help="Actual units before the demand gate decides")] = 50.0,
    min_device_days: Annotated[float, typer.Option(help="Device-days before the device_anomaly gate decides")] = 1.0,
    max_device_alerts_per_day: Annotated[
        float | None, typer.Option(help="Budget of device alerts per device-day (device_anomaly)")] = None,
    max_error_rate: Annotated[float, typer.Option(help="Share of messages the model may fail on")] = 0.01,
    min_stage_duration: Annotated[float, typer.Option(help="Seconds each stage lasts at least")] = 60.0,
    stage_timeout: Annotated[float, typer.Option(help="Seconds before a stuck stage halts")] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Start a staged rollout of a promoted version."""
    body = {"task": task, "model_version": version, "scope": scope, "group": group, "canary_fraction": canary,
            "waves": _waves(waves), "shadow": shadow,
            "gates": {"min_readings": min_readings, "max_alert_rate_ratio": max_alert_rate_ratio,
                      "max_wape_ratio": max_wape_ratio, "min_actual_units": min_actual_units,
                      "min_device_days": min_device_days, "max_device_alerts_per_day": max_device_alerts_per_day,
                      "max_error_rate": max_error_rate, "min_stage_duration_s": min_stage_duration, "stage_timeout_s": stage_timeout}}
    st = _run(ctx, "POST", "/api/v1/rollouts", body=body)
    if as_json:
        _json(st)
        return
    _out().print(f"rollout {st['rollout_id']} started: {task} v{version} over v{st['previous_version']}", highlight=False)
    _print_stages(st)


def _print_stages(st: dict[str, Any]) -> None:
    table = Table("stage", "state", "gateways")
    for s in st["stages"]:
        table.add_row(s["name"], s["state"], ", ".join(s["gateways"]))
    _out().print(table)


@app.command()
def status(ctx: typer.Context, rollout_id: Annotated[int | None, typer.Argument()] = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """A rollout's stages, members and events (without an id: every rollout)."""
    if rollout_id is None:
        rows = _run(ctx, "GET", "/api/v1/rollouts")
        if as_json:
            _json(rows)
            return
        table = Table("id", "task", "version", "state", "stage", "scope", "reason")
        for r in rows:
            table.add_row(str(r["rollout_id"]), r["task"], str(r["model_version"]), r["state"],
                          f"{r['stage'] + 1}/{r['n_stages']} {r['phase']}", r["scope"], r["reason"] or "")
        _out().print(table)
        return
    st = _run(ctx, "GET", f"/api/v1/rollouts/{rollout_id}")
    if as_json:
        _json(st)
        return
    _out().print(f"[bold]rollout {st['rollout_id']}[/] {st['task']} v{st['model_version']} (over "
              f"v{st['previous_version']}) {st['state']}, stage {st['stage'] + 1}/{st['n_stages']} {st['phase']}",
              highlight=False)
    if st["reason"]:
        _out().print(f"reason: {st['reason']}", highlight=False)
    _print_stages(st)
    members = Table("gateway", "stage", "mode", "running", "gate", "detail")
    for m in st["members"]:
        members.add_row(m["gateway_id"], str(m["stage"]), m["mode"] or "-", str(m["current_version"] or "-"),
                        m["gate"], m["detail"] or "")
    _out().print(members)
    events = Table("time", "event", "stage", "reason")
    for e in st["events"]:
        events.add_row(_ts(e["ts"]), e["kind"], "-" if e["stage"] is None else str(e["stage"]), e["reason"])
    _out().print(events)


def _action(ctx: typer.Context, rollout_id: int, action: str, reason: str | None) -> None:
    st = _run(ctx, "POST", f"/api/v1/rollouts/{rollout_id}/{action}", body={"reason": reason})
    _out().print(f"rollout {rollout_id}: {st['state']} ({st['reason']})", highlight=False)


ReasonOption = Annotated[str | None, typer.Option(help="Why (kept in the rollout's events)")]


@app.command()
def pause(ctx: typer.Context, rollout_id: int, reason: ReasonOption = None) -> None:
    """Stop advancing a rollout for now."""
    _action(ctx, rollout_id, "pause", reason)


@app.command()
def resume(ctx: typer.Context, rollout_id: int, reason: ReasonOption = None) -> None:
    """Continue a paused or halted rollout."""
    _action(ctx, rollout_id, "resume", reason)


@app.command()
def abort(ctx: typer.Context, rollout_id: int, reason: ReasonOption = None) -> None:
    """Stop a rollout for good, leaving gateways on what they run."""
    _action(ctx, rollout_id, "abort", reason)


@app.command()
def rollback(ctx: typer.Context, rollout_id: int, reason: ReasonOption = None) -> None:
    """Send a rollout's gateways back to their previous model."""
    _action(ctx, rollout_id, "rollback", reason)


# keys and signing ------------------------------------------------------------------------------


@app.command()
def keygen(
    out_file: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, mode 0600)")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file")] = False,
) -> None:
    """Write a new Ed25519 signing key; print its public key (base64) for gateway configs."""
    pem = generate_private_key_pem()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out_file, flags, 0o600)
    except FileExistsError:
        _fail(f"{out_file} exists (pass --force to overwrite)")
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(out_file, 0o600)
    signer = Signer(pem)
    _err().print(f"wrote {out_file} (key id {signer.keyid}); trust this public key on gateways and the cloud:",
              highlight=False)
    _out().print(signer.public_key.public_key, highlight=False)


def _signer(path: Path) -> Signer:
    try:
        return Signer.from_file(path)
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"cannot load the key {path}: {exc}")


@app.command()
def sign(
    ctx: typer.Context,
    key: Annotated[Path, typer.Option(help="Private key (PEM) to sign with")],
    dry_run: Annotated[bool, typer.Option(help="Only list what would be signed")] = False,
) -> None:
    """Sign every pending release request with a local key and upload the signatures."""
    signer = _signer(key)
    pending = _run(ctx, "GET", "/api/v1/models/signing-requests")
    if not pending:
        _out().print("nothing to sign")
        return
    for req in pending:
        release = ModelRelease.model_validate_json(json.dumps(req["release"]))
        what = (f"{req['task']} model v{release.model_version} ({req['purpose']}"
                f"{', rollback' if release.rollback else ''}) metadata_version {release.metadata_version}")
        if dry_run:
            _out().print(f"would sign {what}", highlight=False)
            continue
        doc = signer.sign_release(release)
        _run(ctx, "POST", "/api/v1/models/releases", content=doc.model_dump_json(by_alias=True))
        _out().print(f"signed {what}", highlight=False)


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    old_key: Annotated[Path, typer.Option(help="A currently trusted private key (signs the rotation)")],
    new_key: Annotated[Path, typer.Option(help="The private key to trust from now on")],
    revoke_old: Annotated[bool, typer.Option(help="Also revoke the old key")] = False,
) -> None:
    """Sign a key rotation with the old key that adds the new one, and upload it."""
    old, new = _signer(old_key), _signer(new_key)
    keys = _run(ctx, "GET", "/api/v1/models/keys")
    rotation = KeyRotation(rotation_version=int(keys["rotation_version"]) + 1, created_ts=now_ms(),
                           add=(new.public_key,), revoke=(old.keyid,) if revoke_old else ())
    doc = old.sign_rotation(rotation)
    result = _run(ctx, "POST", "/api/v1/models/keys/rotations", content=doc.model_dump_json(by_alias=True))
    _out().print(f"rotation {rotation.rotation_version} accepted: trusted keys {', '.join(result['trusted'])}",
              highlight=False)
    _out().print(f"new public key: {new.public_key.public_key} (set signing_key_file to {new_key} where the cloud "
              "signs online)", highlight=False)
