"""Fair use of the daemon: one user's flood of requests is slowed down; another user's commands still
answer, and are not slowed (real server, real commands; no timing in the assertions)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from users import Users
from wulf.auth import credential
from wulf.auth.key import load_key
from wulfproc import Cluster, running_cluster, wait_until

FLOODERS = 8
PATH = "/api/v1/status?all=0"


def _flood(c: Cluster, uid: int, gid: int, stop: threading.Event, seen: Counter[int]) -> None:
    """Ask for the status again and again on one kept-alive connection, never waiting when told to."""
    key = load_key(c.key_path)
    digest = credential.request_digest("GET", PATH, b"")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(c.socket))
        f = s.makefile("rb")
        while not stop.is_set():
            cred = credential.encode(key, credential.USER, uid, gid, "flood", time.time(), digest)
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nX-Wulf-Credential: {cred}\r\n\r\n".encode())
            status = int(f.readline().split()[1])
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            seen[status] += 1


def test_a_flood_from_one_user_does_not_starve_another(shared_tmp: Path, users: Users) -> None:
    alice, bob = users.alice, users.bob
    with running_cluster(shared_tmp, config="[server]\nrate_limit = 20.0\nrate_burst = 40\n") as c:
        c.agent("n1", cpus=2)
        work = c.root / "bob"
        work.mkdir(mode=0o777)
        stop = threading.Event()
        seen: Counter[int] = Counter()
        threads = [threading.Thread(target=_flood, args=(c, alice.uid, alice.gid, stop, seen))
                   for _ in range(FLOODERS)]
        for t in threads:
            t.start()
        took = []
        try:
            wait_until("the flood to be slowed down", lambda: seen[429] > 100)
            for _ in range(5):  # bob goes about his business meanwhile
                began = time.monotonic()
                p = c.run_as(bob, "qr", "--json", "-c", "true", cwd=work)
                [jid] = json.loads(p.stdout)["jobs"]
                p = c.run_as(bob, "jstat", "--json", "-a")
                assert jid in {j["id"] for j in json.loads(p.stdout)["jobs"]}
                took.append(time.monotonic() - began)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert seen[429] > seen[200] > 0, seen  # alice got her budget, and was told to slow down beyond it
        assert set(seen) <= {200, 429}, seen  # and nothing failed
        log = (c.root / "server.log").read_text()
        assert f"{alice.name} is over their request budget" in log
        assert f"{bob.name} is over" not in log  # bob was never slowed down
        # once she stops, she gets answers again (the commands wait out a "slow down" when they get one)
        assert c.run_as(alice, "jstat").returncode == 0
        print(f"flood: {dict(seen)} answers; bob's qr + jstat took {', '.join(f'{t:.2f}s' for t in took)}")
