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


#: the self-checkpointing program (issue 13 §2): ``python3 COUNTER STATE TOTAL [SAVE]`` counts to TOTAL, a step a
#: tenth of a second; on SIGUSR1 (or SIGTERM) it saves its count in STATE (taking SAVE seconds, 0 unless given,
#: as a big checkpoint would) and exits with the checkpoint exit code; run again (WULF_RESTART_COUNT > 0), it
#: goes on from the saved count
COUNTER = r'''
import os, signal, sys, time
state, total = sys.argv[1], int(sys.argv[2])
save_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
restart = int(os.environ["WULF_RESTART_COUNT"])
n = int(open(state).read()) if restart > 0 else 0
stop = []
signal.signal(signal.SIGUSR1, lambda s, f: stop.append(s))
signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
print(f"run {restart} starts at {n}", flush=True)
while n < total:
    if stop:
        time.sleep(save_seconds)
        with open(state + ".tmp", "w") as f:
            f.write(str(n))
        os.rename(state + ".tmp", state)
        print(f"run {restart} saved {n} on signal {stop[0]}", flush=True)
        sys.exit(int(os.environ["WULF_CHECKPOINT_EXIT"]))
    n += 1
    time.sleep(0.1)
print(f"run {restart} counted to {n}", flush=True)
'''
