"""[log]: JSON lines that parse, and size-based rotation that keeps at most ``keep`` files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wulf import logs
from wulf.config import LogConfig, parse_config
from wulf.errors import ConfigError


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger as it was, and stderr, back after the test (setup takes both over)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = os.dup(2)
    try:
        yield root
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
            h.close()
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        os.dup2(saved, 2)
        os.close(saved)


def test_json_lines_parse(root_logger: logging.Logger, tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    logs.setup(LogConfig(format="json"), "server", file=str(path))
    log = logging.getLogger("wulf.test")
    log.info('a "quoted" message\nover two lines, with ünïcode')
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == 'a "quoted" message\nover two lines, with ünïcode'
    assert first["level"] == "info" and first["logger"] == "wulf.test" and first["daemon"] == "server"
    assert first["pid"] == os.getpid() and first["time"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_rotation_keeps_at_most_keep_files(root_logger: logging.Logger, tmp_path: Path) -> None:
    cfg = LogConfig(file=str(tmp_path / "{daemon}.log"), max_mb=0.01, keep=3)  # about 10 KB a file
    logs.setup(cfg, "agent")
    log = logging.getLogger("wulf.test")
    for i in range(2000):
        log.info("line %d %s", i, "x" * 100)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["agent.log", "agent.log.1", "agent.log.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 0.01 * logs.MB + 200
    assert "line 1999 " in (tmp_path / "agent.log").read_text()


def test_keep_one_starts_the_file_again(root_logger: logging.Logger, tmp_path: Path) -> None:
    logs.setup(LogConfig(file=str(tmp_path / "a.log"), max_mb=0.01, keep=1), "agent")
    for i in range(2000):
        logging.getLogger("t").warning("line %d %s", i, "y" * 100)
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]
    assert (tmp_path / "a.log").stat().st_size <= 0.01 * logs.MB + 200


def test_stderr_follows_the_current_file(root_logger: logging.Logger, tmp_path: Path) -> None:
    """What is written to stderr outside logging (a crash) lands in the current file, after a rotation too."""
    logs.setup(LogConfig(file=str(tmp_path / "a.log"), max_mb=0.01, keep=2), "server")
    for i in range(200):
        logging.getLogger("t").warning("line %d %s", i, "z" * 100)
    os.write(2, b"written to stderr\n")
    assert "written to stderr" in (tmp_path / "a.log").read_text()


@pytest.mark.parametrize("text, message", [
    ('[log]\nformat = "xml"', 'log.format must be "text" or "json"'),
    ("[log]\nmax_mb = 0", "log.max_mb must be"),
    ("[log]\nkeep = 0", "log.keep must be"),
    ('[log]\nlevel = "loud"', "log.level must be"),
])
def test_bad_log_config(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
