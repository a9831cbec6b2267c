"""Model files under ``{updates dir}``: obtain a release's artifact, verified; prune the rest.

``{dir}/{task}/v{version}-{sha256}.tflite`` holds exactly the signed bytes, with the signed
manifest next to it (``.json``): one file pair per model version (two versions may share bytes,
not their manifest). The bytes come from a local copy with the same sha256 when there is one,
else from a resumable download into ``{dir}/staging/{sha256}.part``
(:mod:`~edge_agent.updates.download`); length and sha256 are checked before the file is renamed
into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

import httpx

from edge_agent.backoff import Backoff
from edge_agent.config import CloudConfig, UpdatesConfig
from edge_agent.updates.download import Downloader
from edge_agent.updates.state import write_atomic
from edge_agent.updates.verify import Rejected, check_artifact
from protocols import ArtifactRef, DesiredModel

log = logging.getLogger(__name__)

STAGING = "staging"


class Artifacts:
    def __init__(
        self,
        directory: Path,
        config: UpdatesConfig,
        cloud: CloudConfig,
        rng: random.Random,
        stop: threading.Event,
    ) -> None:
        self.directory = directory
        self._config = config
        self._cloud = cloud
        self._rng = rng
        self._stop = stop

    def path_of(self, task: str, desired: DesiredModel) -> Path:
        rel = desired.release.signed
        return self.directory / task / f"v{rel.model_version}-{rel.artifact.sha256}.tflite"

    def obtain(self, task: str, desired: DesiredModel, client: httpx.Client, local: Iterable[Path]) -> Path:
        """The model file of ``desired`` with exactly the signed bytes and the signed manifest next
        to it; ``local``: files with the same sha256 (the first is copied instead of downloading).

        Raises :class:`~edge_agent.updates.verify.Rejected` or ``DownloadStopped``.
        """
        rel = desired.release.signed
        ref = rel.artifact
        target = self.path_of(task, desired)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _verified(target, ref):
            copies = list(local)
            if copies and _copy_verified(copies[0], target, ref):
                log.info("%s v%d: reusing the local copy %s", task, rel.model_version, copies[0])
            else:
                self._download(desired, target, client)
        write_atomic(target.with_suffix(".json"), json.dumps(rel.manifest, indent=2).encode())
        return target

    def _download(self, desired: DesiredModel, target: Path, client: httpx.Client) -> None:
        ref = desired.release.signed.artifact
        downloader = Downloader(
            client,
            self.directory / STAGING,
            chunk_bytes=self._config.chunk_bytes,
            retries=self._config.download_retries,
            min_free_bytes=self._config.min_free_bytes,
            backoff=Backoff(self._cloud.backoff_min_s, self._cloud.backoff_max_s, self._rng),
            stop=self._stop,
        )
        try:
            part = downloader.fetch(desired.artifact_path, ref)
        except OSError as exc:
            raise Rejected("download_failed", f"staging failed: {exc}") from None
        try:
            check_artifact(part, ref)
        except Rejected:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)

    def drop_stale_parts(self, wanted: set[str]) -> None:
        """Delete partial downloads of artifacts no longer desired (a resumable ``.part`` of a
        release the cloud replaced or withdrew would otherwise hold its disk space for ever)."""
        staging = self.directory / STAGING
        if not staging.is_dir():
            return
        for part in staging.glob("*.part"):
            if part.stem not in wanted:
                with contextlib.suppress(OSError):
                    size = part.stat().st_size
                    part.unlink()
                    log.info("dropped the partial download %s (%d bytes): no longer desired", part.name, size)

    def prune(self, task: str, keep: Iterable[str]) -> None:
        """Drop ``task``'s model files (and manifests) but those named in ``keep``."""
        kept = set(keep)
        folder = self.directory / task
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix in (".tflite", ".json") and path.with_suffix(".tflite").name not in kept:
                    with contextlib.suppress(OSError):
                        path.unlink()


def _verified(path: Path, ref: ArtifactRef) -> bool:
    if not path.is_file():
        return False
    try:
        check_artifact(path, ref)
        return True
    except Rejected:
        path.unlink(missing_ok=True)
        return False


def _copy_verified(source: Path, target: Path, ref: ArtifactRef) -> bool:
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        check_artifact(tmp, ref)
    except (OSError, Rejected):
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, target)
    return True
