"""Read a job's output file for ``jtail``, as the job's owner, never as root.

The file is in a directory its owner controls: by the time it is read, the job may have replaced it
with a link to ``/etc/shadow``, a FIFO, or anything else. So the agent never opens it itself. It
starts a small reader as the owner (through util-linux ``setpriv`` with a fixed environment, as a
job's supervisor starts: see :func:`wulf.agent.launcher.become_argv`; else a fork that changes user
first), which opens the file with ``O_NOFOLLOW`` (a link is refused, not followed) and
``O_NONBLOCK`` (a FIFO does not hang it), refuses what is not a regular file, and writes at most
``limit`` bytes of it, after one header line, to a pipe. Whatever the owner could not read
themselves, the reader cannot either. It runs in a thread of the agent (the reader is waited for
by its pid, never by ``waitpid(-1)``), with a deadline.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Final

from wulf.agent.launcher import MINIMAL_PATH, become_argv, setpriv
from wulf.agent.owner import CannotRun, Owner, owner_by_ids
from wulf.protocol import MAX_OUTPUT_CHUNK, ReadOutput

READ_TIMEOUT: Final = 10.0
"""Seconds a reader may take before it is killed and the read fails."""

# Run by ``python -I -S`` as the owner: nothing of the owner's environment, site or home is read.
# Header: "S <size> <start>\n" then the bytes, or "E <kind> <text>\n" (kind: missing, link, refused).
READER: Final = r"""
import errno, os, stat, sys
path, offset, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
def fail(kind, text):
    out.write(("E %s %s\n" % (kind, text)).encode("utf-8", "replace"))
    sys.exit(0)
try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
except OSError as e:
    if e.errno == errno.ELOOP:
        fail("link", "is a symbolic link, which is not followed")
    if e.errno == errno.ENOENT:
        fail("missing", "is not there")
    fail("refused", e.strerror or str(e))
st = os.fstat(fd)
if not stat.S_ISREG(st.st_mode):
    fail("refused", "is not a regular file")
size = st.st_size
start = max(0, size + offset) if offset < 0 else offset
chunks, left, at = [], max(0, min(limit, size - start)), start
while left > 0:
    data = os.pread(fd, min(left, 1 << 20), at)
    if not data:
        break
    chunks.append(data)
    left -= len(data)
    at += len(data)
out.write(b"S %d %d\n" % (size, start))
out.write(b"".join(chunks))
"""


@dataclass(frozen=True)
class Read:
    """What a reader found: the bytes from ``start``, the file's ``size``; or an ``error``."""

    data: bytes = b""
    start: int = 0
    size: int = 0
    error: str = ""
    missing: bool = False


def reader_argv(path: str, offset: int, limit: int, owner: Owner | None, helper: str | None) -> list[str]:
    """The command line of a reader of ``path``; as ``owner`` through ``helper`` (setpriv) if both are given."""
    argv = [sys.executable, "-I", "-S", "-c", READER, path, str(offset), str(min(limit, MAX_OUTPUT_CHUNK))]
    if owner is not None and helper is not None:
        return [*become_argv(helper, owner), *argv]
    return argv


def parse_reply(raw: bytes, path: str, limit: int, code: int = 0) -> Read:
    """A reader's answer as a :class:`Read` (anything else it wrote is an error, never data); ``code``:
    its exit status."""
    head, sep, body = raw.partition(b"\n")
    fields = head.decode("utf-8", "replace").split(" ", 2)
    if sep and fields[0] == "S" and len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
        return Read(body[:limit], int(fields[2]), int(fields[1]))
    if sep and fields[0] == "E" and len(fields) == 3:
        kind, text = fields[1], fields[2][:200]
        return Read(error=f"{path} {text}", missing=kind == "missing")
    if code:
        return Read(error=f"could not read {path}: its reader, run as the job's owner, failed (exit {code}; "
                          "can they run the agent's Python?)")
    return Read(error=f"could not read {path}")


def read_output(msg: ReadOutput, node: str) -> Read:
    """Read what ``msg`` asks for, as the job's owner (blocking: run it in a thread)."""
    try:
        owner = owner_by_ids(msg.uid, msg.gid, f"uid {msg.uid}", node, what="cannot read its output")
    except CannotRun as e:
        return Read(error=str(e))
    helper = setpriv() if owner is not None else None
    argv = reader_argv(msg.path, msg.offset, msg.limit, owner, helper)
    as_user = owner is not None and helper is None  # no setpriv: the child changes user before it runs anything
    try:
        p = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
            env={"PATH": MINIMAL_PATH}, timeout=READ_TIMEOUT, close_fds=True,
            user=owner.uid if as_user and owner else None, group=owner.gid if as_user and owner else None,
            extra_groups=list(owner.groups) if as_user and owner else None,
        )
    except subprocess.TimeoutExpired:
        return Read(error=f"reading {msg.path} took longer than {READ_TIMEOUT:g}s")
    except (OSError, subprocess.SubprocessError) as e:
        return Read(error=f"could not start a reader of {msg.path}: {e}")
    return parse_reply(p.stdout, msg.path, msg.limit, p.returncode)
