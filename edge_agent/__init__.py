"""Edgehouse gateway agent: MQTT ingest into SQLite, outbox sync to the cloud, metrics and status.

Imports only :mod:`protocols` (and, later, the edge-safe parts of :mod:`models`); never ``cloud``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgehouse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
