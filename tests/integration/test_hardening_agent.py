"""Issue 10, the agent's side: what a user sends must never run as root, nor stop an agent, nor get a
job lost or run twice. Each test is written from the reproduction of one finding (they need root)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from users import Users
from wulf.agent.main import Agent, runtime_dir
from wulf.agent.rundir import UnsafeDirectory, secure_dir
from wulf.auth.key import ClusterKey
from wulf.config import AgentConfig, Config
from wulf.protocol import StartJob
from wulfproc import Cluster, agent_in_process, running_cluster, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

EVIL_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void) {
    FILE *f = fopen(LOG, "a");
    if (f) { fprintf(f, "%d %d\n", (int)geteuid(), (int)getpid()); fclose(f); }
}
"""


def _evil_library(where: Path) -> tuple[Path, Path]:
    """A preload library that writes its process's effective uid to a log each time it is loaded."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    log = where / "evil.log"
    log.touch()
    log.chmod(0o666)
    src = where / "evil.c"
    src.write_text(EVIL_C)
    lib = where / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", f'-DLOG="{log}"', "-o", str(lib), str(src)], check=True)
    lib.chmod(0o755)
    return lib, log


def test_a_users_preload_library_never_runs_as_root(shared_tmp: Path, users: Users) -> None:
    """Finding 1 (critical): LD_PRELOAD (and LD_LIBRARY_PATH, LD_AUDIT, ...) in the environment a job was
    submitted with reached setpriv while it was still root."""
    alice = users.alice
    lib, log = _evil_library(shared_tmp)
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=2)
        # the job's environment (not qr's own: the tests start commands as another user from root)
        env = f"PATH,LD_PRELOAD={lib},LD_LIBRARY_PATH=/wulf-test-lib,GCONV_PATH={shared_tmp}"
        p = c.run_as(alice, "qr", "--json", "--env", env, "-c", 'echo "[$LD_LIBRARY_PATH]"; id -u', cwd=c.work)
        [jid] = json.loads(p.stdout)["jobs"]
        c.run("qwait", str(jid), check=False)
        job = c.job(jid)
        assert job["state"] == "done", job
        out = (c.work / f"wulf-{jid}.out").read_text().splitlines()
        assert out == ["[/wulf-test-lib]", str(alice.uid)]  # the job still has its environment
    loaded = [line.split() for line in log.read_text().splitlines()]
    assert loaded, "the library was never loaded: the test shows nothing"
    assert all(int(euid) == alice.uid for euid, _ in loaded), loaded  # never as root


def _start_job(job_id: int, where: Path, **kw: object) -> StartJob:
    fields: dict[str, object] = dict(id=job_id, name="t", user="root", uid=0, queue="default", command="true",
                                     script=None, cwd=str(where), env={"PATH": os.defpath}, output="",
                                     keep_script=False, cpu=1.0, mem_mb=32.0)
    fields.update(kw)
    return StartJob.model_validate(fields)


async def _ended(agent: Agent, job_id: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while job_id not in agent.unacked:
        assert time.monotonic() < deadline, f"job {job_id} did not end"
        await asyncio.sleep(0.02)


def test_a_job_the_agent_cannot_start_fails_alone(tmp_path: Path) -> None:
    """Finding 2: a NUL byte in a command, '=' in an environment name or a limit of 1e308 raised in the
    agent outside its OSError handler, and the agent died (again on every node the job was sent to)."""
    async def main() -> None:
        async with agent_in_process(tmp_path, "n1", cgroups=False) as agent:
            bad = [
                _start_job(1, tmp_path, command="echo \0 nul"),
                _start_job(2, tmp_path, env={"PATH": os.defpath, "A=B": "x"}),
                _start_job(3, tmp_path, mem_limit_mb=1e308),
                _start_job(4, tmp_path, cwd=str(tmp_path) + "\0x"),
                _start_job(5, tmp_path, script="#!/bin/sh\necho \0\n"),
                _start_job(6, tmp_path, time_limit=float("nan")),
            ]
            agent.start_jobs([*bad, _start_job(7, tmp_path, command="echo fine")])
            for j in range(1, 8):
                await _ended(agent, j)
            for j in range(1, 7):
                e = agent.unacked[j]
                assert e.exit_code != 0 and e.reason.startswith("could not start: "), (j, e)
            assert agent.unacked[7].exit_code == 0  # the agent went on with the next job
            assert (tmp_path / "wulf-7.out").read_text() == "fine\n"

    asyncio.run(main())


def test_the_runtime_directory_is_the_agents_own(tmp_path: Path, users: Users) -> None:
    """Finding 3: /dev/shm/wulf-<uid>/<node>-<hash> is predictable; a user could make it first (or a link
    there) and so write the agent's journal, which the agent trusted on its restart."""
    alice = users.alice
    base = tmp_path / "shm"
    base.mkdir()
    base.chmod(0o1777)
    # a directory a user made where the agent's would be
    theirs = base / "wulf-0"
    theirs.mkdir()
    os.chown(theirs, alice.uid, alice.gid)
    with pytest.raises(UnsafeDirectory, match="owned by"):
        secure_dir(theirs / "n1-abc")
    shutil.rmtree(theirs)
    # a link where the agent's would be
    target = tmp_path / "elsewhere"
    target.mkdir()
    theirs.symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="link"):
        secure_dir(theirs / "n1-abc")
    theirs.unlink()
    # open to others
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="others"):
        secure_dir(theirs / "n1-abc")
    shutil.rmtree(theirs)
    # made anew, it is the agent's alone
    made = secure_dir(theirs / "n1-abc")
    for d in (theirs, made):
        st = d.lstat()
        assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700


def test_an_agent_refuses_a_runtime_directory_it_does_not_own(tmp_path: Path, users: Users) -> None:
    """The agent says so in one line and does not start."""
    alice = users.alice
    run = tmp_path / "run"
    run.mkdir()
    os.chown(run, alice.uid, alice.gid)
    config = Config(agent=AgentConfig(state_dir=str(tmp_path / "state"), runtime_dir=str(run), scratch=str(tmp_path)))
    with pytest.raises(UnsafeDirectory, match=f"{run}.*owned by"):
        Agent(config, "unix:/nonexistent", name="n1", cgroups=False, key=ClusterKey(b"k" * 32), vouch_socket="")
    assert runtime_dir(config, "n1", tmp_path / "state") == run


def test_a_forged_journal_is_not_acted_on(tmp_path: Path) -> None:
    """Finding 3: entries of the journal named paths the agent unlinked and pids it adopted; it must not
    act on an entry that points outside its runtime directory or at a process that is not the job's."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    entry = {"id": 41, "pid": bystander.pid, "start_ticks": None, "started": time.time(), "rc_file": str(victim),
             "script_file": str(victim), "keep_script": False, "err_file": str(victim)}
    (run / "journal.jsonl").write_text(json.dumps(entry) + "\n")

    async def main() -> None:
        async with agent_in_process(tmp_path, "n1", cgroups=False) as agent:
            await _ended(agent, 41)
            assert 41 not in agent.jobs  # the bystander is not adopted
            assert agent.unacked[41].exit_code is None
            await asyncio.sleep(0.3)  # the agent removes an ended job's files after its flush

    try:
        asyncio.run(main())
        assert victim.read_text() == "precious"
        assert bystander.poll() is None  # and not signalled either
    finally:
        bystander.kill()
        bystander.wait()


def _script_ids(c: Cluster, *args: str) -> int:
    [jid] = c.submit(*args)
    return jid


def test_the_jobs_own_shell_is_the_job(shared_tmp: Path) -> None:
    """Finding 5: a job that execs, sets its own EXIT trap, or traps a signal sent with jkill lost its
    exit status (wulf's bookkeeping lived in the job's shell)."""
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=4)
        own_trap = _script_ids(c, "-c", "trap 'echo bye' EXIT; exit 3")
        execs = _script_ids(c, "-c", "exec sh -c 'exit 4'")
        script = "#!/bin/sh\ntrap 'echo got USR1; exit 0' USR1\nsleep 30 & wait\n"
        [traps] = json.loads(c.run("qr", "--json", input=script).stdout)["jobs"]  # a script: a shell of its own
        wait_until("the trapping job to run", lambda: c.job(traps)["state"] == "running")
        time.sleep(0.5)  # its shell has set its trap by now
        c.run("jkill", "-s", "USR1", str(traps))
        c.run("qwait", str(own_trap), str(execs), str(traps), check=False)
        assert (c.job(own_trap)["state"], c.job(own_trap)["exit_code"]) == ("failed", 3)
        assert (c.work / f"wulf-{own_trap}.out").read_text() == "bye\n"
        assert (c.job(execs)["state"], c.job(execs)["exit_code"]) == ("failed", 4)
        assert c.job(traps)["state"] == "done", c.job(traps)
        assert (c.work / f"wulf-{traps}.out").read_text() == "got USR1\n"


def test_a_job_that_execs_keeps_its_exit_status_across_an_agent_restart(shared_tmp: Path) -> None:
    """Finding 5: `qr -c 'exec sleep 12'` across an agent restart ended `failed, lost`."""
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=4)
        jid = _script_ids(c, "-c", "exec sleep 3")
        wait_until("the job to run", lambda: c.job(jid)["state"] == "running")
        c.agents["n1"].kill(signal.SIGKILL)
        c.agent("n1", cpus=4, wait=False)
        c.run("qwait", str(jid), check=False)
        job = c.job(jid)
        assert (job["state"], job["exit_code"]) == ("done", 0), job


def test_a_job_started_just_before_its_agent_died_is_not_run_again(tmp_path: Path) -> None:
    """Finding 3 (reliability): the agent spawned before it journaled, so after its death the server
    requeued a job that still ran. A restarted agent must know every job it started."""
    marks = tmp_path / "marks"

    async def first() -> None:
        async with agent_in_process(tmp_path, "n1", cgroups=False) as agent:
            agent.start_jobs([_start_job(9, tmp_path, command=f"echo ran >> {marks}; sleep 5")])
            # it dies here, before its journal is flushed: nothing else runs on this loop
            journal = (tmp_path / "run" / "journal.jsonl").read_text()
            assert '"id": 9' in journal, journal
            agent.jobs.clear()  # so that leaving the harness does not kill the job: the agent 'died'

    asyncio.run(first())

    async def second() -> None:
        async with agent_in_process(tmp_path, "n1", cgroups=False) as agent:
            deadline = time.monotonic() + 10
            while 9 not in agent.jobs and 9 not in agent.unacked and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # until it has read its journal
            # found again: still running, or (on a slow machine, the restart took longer than the job)
            # ended with its status read from its file; either way not lost, and not started again
            assert 9 in agent.jobs or 9 in agent.unacked, "the restarted agent does not know job 9"
            await _ended(agent, 9)
            assert agent.unacked[9].exit_code == 0

    asyncio.run(second())
    assert marks.read_text() == "ran\n"


def test_a_root_jobs_output_does_not_follow_a_planted_link(shared_tmp: Path, users: Users) -> None:
    """Finding 7: a root job's default output file followed a link a user planted in a shared directory."""
    alice = users.alice
    precious = shared_tmp / "precious"
    precious.write_text("root's")
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=2)
        hers = shared_tmp / "alice-dir"  # root runs a job in a directory of hers
        hers.mkdir()
        os.chown(hers, alice.uid, alice.gid)
        first = c.submit("-c", "true", cwd=hers)[0]
        c.run("qwait", str(first))
        for jid in range(first + 1, first + 4):  # she guesses the next ids
            link = hers / f"wulf-{jid}.out"
            os.symlink(precious, link)
            os.lchown(link, alice.uid, alice.gid)
        jid = c.submit("-c", "echo overwritten", cwd=hers)[0]
        c.run("qwait", str(jid), check=False)
        assert c.job(jid)["state"] == "failed"
    assert precious.read_text() == "root's"
