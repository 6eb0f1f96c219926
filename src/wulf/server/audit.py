"""The audit log: every administrative action, one JSON line each, in the server's state directory.

A line says when, who (user, uid, how they were identified, from where), what, on what, and how it
ended (``ok``, or ``refused: ...``). The file is opened for each line (administrative actions are
rare), so it may be rotated at any time; it is readable by its owner only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from wulf.auth.identity import Caller

log = logging.getLogger("wulf.server")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, caller: Caller, action: str, target: str, result: str, **details: Any) -> None:
        now = time.time()
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "who": caller.user, "uid": caller.uid, "via": caller.via, "host": caller.host,
            "admin": caller.admin, "action": action, "target": target, "result": result, **details,
        }
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as e:
            log.error("cannot write the audit log %s (%s): %s", self.path, e.strerror, line.strip())
        log.info("audit: %s %s %s: %s", caller.user, action, target, result)
