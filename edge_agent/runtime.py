"""``{data_dir}/agent.runtime.json``: how to reach a running agent (pid, bound HTTP port)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class RuntimeInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pid: int
    http_port: int
    http_host: str = "127.0.0.1"
    gateway_id: str | None = None
    started_ts: float | None = None

    @property
    def url(self) -> str:
        host = self.http_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"


def write(path: Path, info: RuntimeInfo) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info.model_dump(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read(path: Path) -> RuntimeInfo:
    return RuntimeInfo.model_validate_json(path.read_text(encoding="utf-8"))


def remove(path: Path, pid: int) -> None:
    """Remove the file if it is still ours (a newer agent may have replaced it)."""
    try:
        if read(path).pid == pid:
            path.unlink()
    except (OSError, ValueError):
        pass
