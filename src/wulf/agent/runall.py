"""``wulf runall`` on a node: one administrator's command, run as the agent's user (root) with ``sh -c``.

The server sends it only for an administrator, and audits it (see wulf.server.app). The command gets
no terminal and reads /dev/null; it runs in a session of its own, so that at its timeout the whole of
it is killed, not only the shell. Its output (stdout and stderr, in the order written) is kept to its
last RUNALL_OUTPUT_BYTES.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from wulf.protocol import RUNALL_OUTPUT_BYTES, Ran, RunCommand

#: the environment the command starts with (the agent's own may hold what is not for it)
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


async def run(msg: RunCommand) -> Ran:
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", msg.command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=ENV, cwd="/")
    except OSError as e:
        return Ran(id=msg.id, error=f"could not start /bin/sh: {e.strerror}")
    assert proc.stdout is not None
    kept = bytearray()
    try:
        async with asyncio.timeout(msg.timeout):
            while chunk := await proc.stdout.read(65536):
                kept += chunk
                if len(kept) > 2 * RUNALL_OUTPUT_BYTES:
                    del kept[:len(kept) - RUNALL_OUTPUT_BYTES]
            code = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return Ran(id=msg.id, output=_text(kept), error=f"timed out after {msg.timeout:g}s (killed)")
    finally:
        if proc.returncode is None:  # cancelled (the agent stops): the command does not outlive it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return Ran(id=msg.id, exit_code=code if code >= 0 else 128 - code, output=_text(kept))


def _text(data: bytearray) -> str:
    cut = len(data) > RUNALL_OUTPUT_BYTES
    text = bytes(data[-RUNALL_OUTPUT_BYTES:]).decode("utf-8", errors="replace")
    return ("[...]\n" + text) if cut else text
