"""Faults of the agent: killed with jobs running, killed as it starts jobs, started twice with one name."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ledger import SMALL, Gate, Ledger, by_id, check

from wulfproc import BIN, Cluster, Daemon, wait_until

RUNNING = 50  # jobs running when the agent is killed, as in the issue
CODE = "$((WULF_JOB_ID % 4))"  # each job's own exit code: 0 (done) or 1-3 (failed)
ROUNDS, PER_ROUND = 14, 20  # agent killed 10-40 ms after a submission (the issue: 280 jobs)


def exits_right(listed: list[dict[str, Any]], ids: list[int]) -> None:
    """Each job ended once, with the exit code it chose: 0 is done, anything else failed."""
    for i, j in by_id(listed, ids).items():
        want = i % 4
        assert (j["state"], j["exit_code"]) == ("done" if want == 0 else "failed", want), j


def test_agent_killed_with_jobs_running_and_ending_while_it_is_down(cluster: Cluster, ledger: Ledger,
                                                                    tmp_path: Path) -> None:
    early, late = Gate(tmp_path / "early"), Gate(tmp_path / "late")
    ids = cluster.submit("--cpu", SMALL, *(["-c", ledger.command(
        f"if [ $((WULF_JOB_ID % 2)) = 0 ]; then {early.wait()}; else {late.wait()}; fi; {ledger.end(CODE)}")]
        * RUNNING))
    ledger.acknowledge(ids)
    wait_until("all of them to run", lambda: all(cluster.job(i)["pid"] for i in ids), timeout=60)
    cluster.agents["n1"].kill()  # SIGKILL: its jobs go on
    cluster.wait_node("n1", "down")
    early.open()  # half of them end while their agent is away
    wait_until("the even ones to end", lambda: ledger.ended() >= {i for i in ids if i % 2 == 0})
    cluster.agent("n1", cpus=2)
    late.open()
    listed = ledger.final_only_states(cluster, timeout=60)
    fig = ledger.figures(f"agent kill -9 with {RUNNING} jobs running, {RUNNING // 2} ending while it is down",
                         listed)
    check(fig)
    exits_right(listed, ids)


def test_agent_back_with_ended_jobs_and_a_queue_waiting_runs_each_job_once(cluster: Cluster, ledger: Ledger,
                                                                          tmp_path: Path) -> None:
    """As above, with the node full and jobs waiting for room: the room the ended jobs leave goes to the
    waiting ones as the agent comes back."""
    early, late = Gate(tmp_path / "early"), Gate(tmp_path / "late")
    ids = cluster.submit("--cpu", "0.039", *(["-c", ledger.command(
        f"if [ $((WULF_JOB_ID % 2)) = 0 ]; then {early.wait()}; else {late.wait()}; fi; {ledger.end(CODE)}")]
        * RUNNING))
    wait_until("all of them to run", lambda: all(cluster.job(i)["pid"] for i in ids), timeout=60)
    waiting = cluster.submit("--cpu", "0.1", *(["-c", ledger.command(ledger.end(CODE))] * 20))
    ledger.acknowledge(ids + waiting)
    wait_until("the others to wait for room", lambda: all(cluster.job(i)["state"] == "queued" for i in waiting))
    cluster.agents["n1"].kill()
    cluster.wait_node("n1", "down")
    early.open()
    wait_until("the even ones to end", lambda: ledger.ended() >= {i for i in ids if i % 2 == 0})
    cluster.agent("n1", cpus=2)
    late.open()
    listed = ledger.final_only_states(cluster, timeout=30)
    fig = ledger.figures("agent kill -9 with a full node and jobs waiting", listed)
    check(fig)
    exits_right(listed, ids + waiting)


def test_agent_restart_keeps_the_exit_code_of_a_job_that_execs(cluster: Cluster, ledger: Ledger,
                                                              tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    ids = cluster.submit("--cpu", SMALL, *(["-c", ledger.command(f"exec sh -c '{gate.wait()}; exit 3'")] * 4))
    ledger.acknowledge(ids)
    wait_until("them to run", lambda: all(cluster.job(i)["pid"] for i in ids))
    cluster.agents["n1"].kill()
    cluster.wait_node("n1", "down")
    cluster.agent("n1", cpus=2)
    gate.open()
    listed = ledger.final_only_states(cluster, timeout=60)
    fig = ledger.figures("agent kill -9 with jobs that exec", listed)
    check(fig)
    for j in by_id(listed, ids).values():
        assert (j["state"], j["exit_code"]) == ("failed", 3), j


@pytest.mark.timeout(240)
def test_agent_killed_just_after_starting_jobs_runs_none_twice(cluster: Cluster, ledger: Ledger) -> None:
    rng = random.Random(10)
    for _ in range(ROUNDS):
        ledger.acknowledge(cluster.submit("--cpu", SMALL, *(["-c", ledger.command("sleep 0.5")] * PER_ROUND)))
        time.sleep(rng.uniform(0.010, 0.040))  # the fault's timing: 10-40 ms after the submission
        cluster.agents["n1"].kill()
        cluster.wait_node("n1", "down")
        cluster.agent("n1", cpus=2)
    listed = ledger.final_only_states(cluster, timeout=90)
    fig = ledger.figures(f"agent kill -9 10-40 ms after submission, x{ROUNDS}", listed)
    check(fig)
    assert {j["state"] for j in by_id(listed, ledger.acked).values()} == {"done"}


def test_a_second_agent_with_the_same_name_is_refused(cluster: Cluster, ledger: Ledger, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    ids = cluster.submit("--cpu", SMALL, *(["-c", ledger.command(f"{gate.wait()}; {ledger.end()}")] * 12))
    ledger.acknowledge(ids)
    wait_until("them to run", lambda: all(cluster.job(i)["pid"] for i in ids))
    first = cluster.agents["n1"]
    twin = twin_agent(cluster, "n1")
    try:
        refused = wait_until_or_none(lambda: not twin.alive(), timeout=20)
        gate.open()
        listed = ledger.final_only_states(cluster, timeout=30)
    finally:
        twin.kill()
    fig = ledger.figures("a second agent with the same name", listed)
    states = [j["state"] for j in by_id(listed, ids).values()]
    print(f"\nthe first agent's jobs: {states.count('done')} done, {len(states) - states.count('done')} not "
          f"(killed); the second agent {'was refused' if refused else 'was not refused'}")
    check(fig)
    assert {j["state"] for j in by_id(listed, ids).values()} == {"done"}, "the first agent's jobs were killed"
    assert first.alive() and refused, "the second agent was not refused"
    assert twin.proc is not None and twin.proc.returncode not in (0, None)
    said = twin.log.read_text().strip().splitlines()
    assert said and "n1" in said[-1] and "Traceback" not in twin.log.read_text(), said[-3:]


def twin_agent(c: Cluster, name: str) -> Daemon:
    """Another `wulf agent --name NAME` (its own state and socket), as a second machine that was given
    the same name by mistake."""
    state = c.root / f"agent-{name}-twin"
    argv = [str(BIN / "wulf"), "agent", "--server", c.url, "--name", name, "--cpus", "2", "--mem", "4G",
            "--state", str(state), "--interval", "0.5", "--key", str(c.key_path),
            "--socket", str(c.root / f"agent-{name}-twin.sock")]
    return Daemon(argv, c.root / f"agent-{name}-twin.log", c.env).start()


def wait_until_or_none(check: Callable[[], object], timeout: float) -> bool:
    """Whether ``check`` came true within ``timeout`` (the test goes on either way, to count)."""
    try:
        wait_until("it", check, timeout)
        return True
    except AssertionError:
        return False

