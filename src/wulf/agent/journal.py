"""The agent's journal: what it must not forget across its own restarts."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


class Journal:
    """What the agent must not forget across its own restarts: jobs running, exits not yet acknowledged.

    An append-only file of JSON lines (``start``, ``exit``, ``ack``), one write per batch of events,
    rewritten with only the live entries when it has grown. It lives in a tmpfs runtime directory:
    jobs do not survive a reboot, and neither need their records.
    """

    COMPACT_AFTER = 20000  # records appended before the file is rewritten

    def __init__(self, root: Path) -> None:
        self.root = root  # the agent's own (see wulf.agent.rundir); its files are still never opened through a link
        self.path = root / "journal.jsonl"
        self.live: dict[int, dict[str, Any]] = {}
        self._appended = 0
        self._fd = -1

    def load(self) -> list[dict[str, Any]]:
        """The live entries left by a previous run; then the file is rewritten with just those."""
        self.live.clear()
        try:
            with open(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), encoding="utf-8",
                      errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self._apply(rec)
                    except (ValueError, TypeError, KeyError, AttributeError):
                        continue  # a torn last line from a crash
        except FileNotFoundError:
            pass
        self._rewrite()
        return list(self.live.values())

    def _apply(self, rec: dict[str, Any]) -> None:
        if "ack" in rec:
            for job_id in rec["ack"]:
                self.live.pop(int(job_id), None)
        else:
            self.live[int(rec["id"])] = rec

    def _rewrite(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        tmp = self.root / "journal.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in self.live.values()))
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._appended = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        for rec in records:
            self._apply(rec)
        if self._fd < 0:
            self._rewrite()
        os.write(self._fd, "".join(json.dumps(r) + "\n" for r in records).encode())
        self._appended += len(records)
        if self._appended > self.COMPACT_AFTER and len(self.live) < self._appended // 4:
            self._rewrite()
