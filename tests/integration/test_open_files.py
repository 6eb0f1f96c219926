"""The daemons raise their open-file limit; the jobs and sessions they start get back the one they were given."""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from users import Users
from wulfproc import Cluster, Daemon, running_cluster

#: the soft limit the daemons are started with here (systemd's default for services)
GIVEN = 1024


def _soft_limit(daemon: Daemon | None) -> int:
    assert daemon is not None and daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc/PID/limits")


@pytest.fixture
def lowered() -> Iterator[int]:
    """This process's soft limit lowered to GIVEN while the daemons start (they inherit it); its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= GIVEN:
        pytest.skip(f"the hard open-file limit here is {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (GIVEN, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _output(c: Cluster, job_id: int) -> str:
    c.run("qwait", str(job_id))
    return (c.work / f"wulf-{job_id}.out").read_text().strip()


def test_daemons_raise_their_limit_and_jobs_get_the_given_one_back(lowered: int, users: Users,
                                                                   shared_tmp: Path) -> None:
    ceiling = 1 << 20 if lowered == resource.RLIM_INFINITY else lowered
    with running_cluster(shared_tmp) as c:
        c.agent("n1")
        assert _soft_limit(c.server) == ceiling and _soft_limit(c.agents["n1"]) == ceiling
        [mine] = c.submit("-c", "ulimit -Sn")
        assert _output(c, mine) == str(GIVEN)
        [theirs] = json.loads(c.run_as(users.alice, "qr", "--json", "-c", "ulimit -Sn").stdout)["jobs"]
        assert _output(c, theirs) == str(GIVEN)  # run as its owner, through another path
        assert c.run("jr", "sh", "-c", "ulimit -Sn").stdout.strip() == str(GIVEN)
