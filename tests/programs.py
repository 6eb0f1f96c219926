"""Programs the tests run as jobs or beside them."""

from __future__ import annotations

import shlex


def copy_on_write(children: int, ready: str) -> str:
    """Python source of a 100 MB parent (every page resident) that forks ``children`` children sharing
    its pages, prints ``ready`` and sleeps: resident sizes add up to (children + 1) x 100 MB, its
    memory by PSS or by cgroup to about 100 MB."""
    return f"""\
import os, time
x = bytearray(100 << 20)
for i in range(len(x) // 4096):
    x[i * 4096] = 1  # touch every page: resident in the parent, shared with each child
for _ in range({children}):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
print({ready!r}, flush=True)
time.sleep(60)
"""


def shell(source: str) -> str:
    """A shell command that runs Python ``source``."""
    return f"python3 -c {shlex.quote(source)}"
