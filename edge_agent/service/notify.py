"""sd_notify: tell the service manager that the agent is ready or stopping (``Type=notify``).

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (an ``@`` first means the abstract namespace). Without that variable (not
started by systemd) every call is a no-op; a failure to send is logged, never raised: the
service manager's bookkeeping must not stop the agent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*assignments: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``assignments`` (``"READY=1"``, ``"STATUS=…"``); True when a service manager got them."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address or not assignments:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode("utf-8"))
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", env.get("NOTIFY_SOCKET"), exc)
        return False
    return True
