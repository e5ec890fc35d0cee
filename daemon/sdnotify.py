"""systemd readiness and status notifications (supervisor).

`Type=notify` units wait for READY=1 before they count the daemon as started, and show STATUS= in
`systemctl status`. The protocol is one datagram to the socket named by $NOTIFY_SOCKET (a path, or an
abstract name starting with '@'). Outside systemd the variable is unset and every call is a no-op.
Written here rather than depending on python-systemd: it is a dozen lines and needs no libsystemd.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; silent when not run by systemd, logs once if the socket is unusable."""

    def __init__(self, address: str | None = None) -> None:
        raw = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        self._address = "\0" + raw[1:] if raw.startswith("@") else raw
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self._address) and not self._failed

    def notify(self, **fields: str | int) -> bool:
        """Send KEY=value lines (e.g. READY=1, STATUS=...); True if delivered."""
        if not self.enabled:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            self._failed = True
            log.warning("systemd notification socket %r unusable, notifications off: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready=1, status=status, mainpid=os.getpid())

    def stopping(self, status: str) -> bool:
        return self.notify(stopping=1, status=status)

    def status(self, status: str) -> bool:
        return self.notify(status=status)
