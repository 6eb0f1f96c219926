"""Counting jobs under faults: each job appends its own id to one file, the test counts.

A :class:`Ledger` makes job commands and script files whose first act is ``echo $WULF_JOB_ID >> FILE``
(one short ``O_APPEND`` write: lines never mix), remembers which ids the server acknowledged to a
client, and from the file and the server's listing (``jstat --json -a``) makes the five figures the
fault-injection note reports for each fault:

* acknowledged: ids the server returned to a client (``qr --json``);
* present: acknowledged ids the server lists;
* ran: acknowledged ids with at least one line in the file;
* ran twice: ids (acknowledged or not) with more than one line;
* lost: acknowledged ids that are not listed or never ran.

The figures are printed (``pytest -s`` shows them), kept for the end-of-run summary (see conftest.py)
and, when ``$WULF_FAULT_FIGURES`` names a file, appended to it as JSON lines (``python -m bench.faults``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import subprocess
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wulfproc import BIN, Cluster, wait_until

FINAL = frozenset({"done", "failed", "cancelled"})
# Placement by allocations only: what else runs on the machine (other tests, a busy CI runner) does not
# change how many of a test's jobs run at once. The faults are about the daemons, not about placement.
CONFIG = "[scheduler]\nuse_observed = false\n"
SMALL = "0.02"  # cpus a test job asks for: a 2-cpu agent runs many at once (the machine has 2 cores)


@dataclass(frozen=True)
class Figures:
    fault: str
    acknowledged: int
    present: int
    ran: int
    ran_twice: int
    lost: int
    unacknowledged_ran: int = 0  # committed and run although the client never heard back (not lost)

    def line(self) -> str:
        extra = f", {self.unacknowledged_ran} ran unacknowledged" if self.unacknowledged_ran else ""
        return (f"{self.fault}: acknowledged {self.acknowledged}, present {self.present}, ran {self.ran}, "
                f"ran twice {self.ran_twice}, lost {self.lost}{extra}")


MEASURED: list[Figures] = []  # every figure of this run, for the summary at the end


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        path.chmod(0o666)
        self.ends = path.with_suffix(".ended")
        self.ends.touch()
        self.ends.chmod(0o666)
        self.acked: list[int] = []
        self._lock = threading.Lock()

    def command(self, then: str = "") -> str:
        """A job that notes its run in the ledger, then runs ``then`` (a shell command line)."""
        note = f'echo "$WULF_JOB_ID" >> {shlex.quote(str(self.path))}'
        return f"{note}; {then}" if then else note

    def end(self, code: str = "0") -> str:
        """The last words of a job that notes its end (to see that jobs end while a daemon is away)
        and exits with ``code`` (a shell word: ``$((WULF_JOB_ID % 4))``)."""
        return f'echo "$WULF_JOB_ID" >> {shlex.quote(str(self.ends))}; exit {code}'

    def ended(self) -> set[int]:
        return {int(line) for line in self.ends.read_text().split()}

    def script_file(self, dest: Path, n: int, then: str = "") -> Path:
        """A file of ``n`` scripts (separated by ``#NEXTSCRIPT``), each a job that notes its run."""
        body = "#!/bin/sh\n" + "".join(f"{self.command(then)}\n#NEXTSCRIPT\n" for _ in range(n))
        dest.write_text(body)
        return dest

    def acknowledge(self, ids: Iterable[int]) -> None:
        with self._lock:
            self.acked.extend(ids)

    def runs(self) -> Counter[int]:
        return Counter(int(line) for line in self.path.read_text().split())

    def figures(self, fault: str, listed: Iterable[Mapping[str, Any]]) -> Figures:
        acked = set(self.acked)
        present = acked & {int(j["id"]) for j in listed}
        runs = self.runs()
        ran = {i for i in acked if runs[i] >= 1}
        fig = Figures(fault=fault, acknowledged=len(self.acked), present=len(present), ran=len(ran),
                      ran_twice=sum(1 for n in runs.values() if n > 1), lost=len(acked - (present & ran)),
                      unacknowledged_ran=len(set(runs) - acked))
        report(fig)
        return fig

    def wait_all_final(self, c: Cluster, timeout: float) -> list[dict[str, Any]]:
        """Wait (polling ``jstat --json -a``) until every acknowledged job has ended, and every run the
        server knows of is in the ledger; return the listing. Fails the test at ``timeout``."""
        acked = set(self.acked)

        def ended() -> list[dict[str, Any]] | None:
            status = c.try_status()
            if status is None:
                return None
            jobs = [j for j in status["jobs"] if j["id"] in acked]
            return status["jobs"] if len(jobs) == len(acked) and all(j["state"] in FINAL for j in jobs) else None

        listed: list[dict[str, Any]] = wait_until("every acknowledged job to end", ended, timeout, every=0.5)
        return listed

    def final_only_states(self, c: Cluster, timeout: float) -> list[dict[str, Any]]:
        """Like :meth:`wait_all_final`, but never fail on the wait: the listing at the deadline, so that
        the figures can be made (and printed) even when jobs stay unfinished."""
        try:
            return self.wait_all_final(c, timeout)
        except AssertionError:
            status = c.try_status()
            return status["jobs"] if status else []


def report(fig: Figures) -> None:
    MEASURED.append(fig)
    print(f"\nFAULT FIGURES {fig.line()}")
    out = os.environ.get("WULF_FAULT_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(asdict(fig)) + "\n")


def check(fig: Figures) -> None:
    """What must hold under every fault: nothing acknowledged is lost, nothing runs twice."""
    assert fig.lost == 0, f"{fig.lost} acknowledged jobs lost ({fig.line()})"
    assert fig.ran_twice == 0, f"{fig.ran_twice} jobs ran twice ({fig.line()})"
    assert fig.present == fig.acknowledged == fig.ran


def by_id(listed: Iterable[Mapping[str, Any]], ids: Iterable[int]) -> dict[int, Mapping[str, Any]]:
    want = set(ids)
    return {int(j["id"]): j for j in listed if j["id"] in want}


class Gate:
    """A file the test holds an exclusive ``flock`` on: a job that runs ``gate.wait()`` blocks (using no
    cpu) until the test calls :meth:`open`. Locks are the kernel's, so this works across namespaces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        path.chmod(0o666)
        self._fd: int | None = os.open(path, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def wait(self) -> str:
        return f"flock -s {shlex.quote(str(self.path))} true"

    def open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def qr(c: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "qr"), "--json", "--cpu", SMALL, *args], capture_output=True, text=True,
                          env=c.env, cwd=c.work, timeout=timeout)


def clear_error(p: subprocess.CompletedProcess[str]) -> str:
    """A failed command says why in one line, with a documented exit code, never a traceback."""
    err = p.stderr.strip()
    assert p.returncode in (1, 2, 3, 5), (p.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def agent_exits(c: Cluster, name: str) -> set[int]:
    """Ids of the jobs whose exits the agent ``name`` has written to its journal and the server has not
    acknowledged (how a test knows an agent has seen its jobs end; see wulf.agent.journal)."""
    state = (c.root / f"agent-{name}").resolve()
    tag = hashlib.sha1(str(state).encode()).hexdigest()[:8]
    live: dict[int, bool] = {}
    for journal in Path("/dev/shm").glob(f"wulf-{os.getuid()}/*-{tag}/journal.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line being written
            if "ack" in rec:
                for i in rec["ack"]:
                    live.pop(int(i), None)
            else:
                live[int(rec["id"])] = "exit" in rec
    return {i for i, ended in live.items() if ended}
