"""wulf runall across three namespaced test hosts: each runs the command as root in its own namespaces,
one of them fails; an ordinary user is refused; every use is in the audit log."""

from __future__ import annotations

import json

from users import Users
from wulfproc import Cluster


def test_runall_runs_on_every_host_and_says_which_failed(three: Cluster) -> None:
    # each host answers with its own name (its UTS namespace) and uid; node2's command fails
    cmd = 'echo "$(hostname) uid=$(id -u)"; [ "$(hostname)" != node2 ] || { echo broken >&2; exit 3; }'
    p = three.run("wulf", "runall", "--", cmd, check=False)
    assert p.returncode == 1, p.stderr
    assert sorted(p.stdout.splitlines()) == ["node1: node1 uid=0", "node2: broken", "node2: node2 uid=0",
                                             "node3: node3 uid=0"]
    assert p.stderr.strip() == "runall: 3 nodes: 2 exited 0; failed: node2 (exit 3)"
    ok = three.run("wulf", "runall", "-n", "node1,node3", "--json", "hostname")
    results = json.loads(ok.stdout)["results"]
    assert [(r["node"], r["exit_code"], r["output"]) for r in results] == [("node1", 0, "node1\n"),
                                                                          ("node3", 0, "node3\n")]
    slow = three.run("wulf", "runall", "-n", "node1", "--timeout", "1", "--", "echo started; sleep 60", check=False)
    assert slow.returncode == 1 and "node1: started" in slow.stdout and "timed out after 1s" in slow.stderr
    audit = [json.loads(line) for line in (three.state / "audit.jsonl").read_text().splitlines()]
    runs = [a for a in audit if a["action"] == "runall"]
    assert [a["command"] for a in runs] == [cmd, "hostname", "echo started; sleep 60"]
    assert runs[0]["exits"] == {"node1": 0, "node2": 3, "node3": 0}


def test_runall_is_for_administrators_only(three: Cluster, users: Users) -> None:
    p = three.run_as(users.alice, "wulf", "runall", "--", "touch /tmp/should-not-exist", check=False)
    assert p.returncode == 5 and "not an administrator" in p.stderr and len(p.stderr.splitlines()) == 1
    bad = three.run("wulf", "runall", "-n", "nosuch", "--", "true", check=False)
    assert bad.returncode == 4 and "no node nosuch" in bad.stderr and "Traceback" not in bad.stderr
    empty = three.run("wulf", "runall", check=False)
    assert empty.returncode == 2 and "give the command" in empty.stderr
