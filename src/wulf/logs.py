"""Where the daemons' log lines go, and in what shape: the one place logging is set up.

``wulf server`` and ``wulf agent`` (and so ``wulf up``) call :func:`setup` once at start with the
``[log]`` table. Lines go to stderr, where systemd's journal takes them, or to a file that is rotated by
size: a log never grows without bound. ``format = "json"`` makes one JSON object a line, for log
collectors; the text format is for people.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from typing import Any

from wulf.config import LogConfig
from wulf.errors import ConfigError

_TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"
MB = 1024 * 1024


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the daemon and its pid,
    and the traceback as ``exc`` when there is one. A message never breaks the line: JSON escapes it."""

    def __init__(self, daemon: str) -> None:
        super().__init__()
        self.daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
            "logger": record.name, "message": record.getMessage(), "daemon": self.daemon,
            "pid": record.process,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class RotatingFile(logging.handlers.RotatingFileHandler):
    """A size-rotated log file that keeps ``keep`` files in all (the current one and ``keep - 1`` older
    ones: FILE.1 the newest). With ``keep = 1`` the file starts again empty when full (the standard
    handler would never rotate it). Its file also becomes the process's stderr, so that what does not go
    through logging (a crash at start) lands in the current file, not in one rotated away."""

    def __init__(self, path: str, max_bytes: int, keep: int, own_stderr: bool) -> None:
        self.own_stderr = own_stderr
        super().__init__(path, maxBytes=max_bytes, backupCount=keep - 1, encoding="utf-8")
        self._take_stderr()

    def doRollover(self) -> None:
        if self.backupCount > 0:
            super().doRollover()
        else:
            if self.stream:
                self.stream.close()
            self.stream = open(self.baseFilename, "w", encoding="utf-8")
        self._take_stderr()

    def _take_stderr(self) -> None:
        if self.own_stderr and self.stream is not None:
            sys.stderr.flush()
            os.dup2(self.stream.fileno(), 2)


def log_path(cfg: LogConfig, daemon: str) -> str:
    return cfg.file.replace("{daemon}", daemon)


def setup(cfg: LogConfig, daemon: str, verbose: bool = False, file: str | None = None) -> None:
    """Send this process's log lines where ``[log]`` says (``file``, if given, wins: ``wulf up`` gives each
    of its daemons a file of its own). Replaces whatever handlers the root logger had."""
    path = log_path(cfg, daemon) if file is None else file
    handler: logging.Handler
    if path:
        path = os.path.abspath(path)
        try:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            handler = RotatingFile(path, int(cfg.max_mb * MB), cfg.keep, own_stderr=True)
        except OSError as e:
            raise ConfigError(f"cannot write the log file {path}: {e.strerror}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(daemon) if cfg.format == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, cfg.level.upper()))
