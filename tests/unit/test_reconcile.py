"""The server's reconciliation with a reconnecting agent, in process (the real daemon and store; the
agent's connection records what is sent): a job is the agent's or back in line, never both."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from wulf.auth.identity import Caller
from wulf.config import Config, ServerConfig
from wulf.model.job import Job
from wulf.protocol import Exited, Hello, JobExit, JobSpec, NodeInfo, SubmitRequest
from wulf.server.daemon import Daemon
from wulf.server.nodes import AgentLink
from wulf.store.sqlite import SqliteStore

ALICE = Caller("alice", 1000, 1000, "test")


class _Link:
    """An agent's connection that keeps what the server sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self) -> None:
        pass

    def started(self) -> set[int]:
        return {int(j["id"]) for m in self.sent if m["type"] == "start" for j in m["jobs"]}  # type: ignore[union-attr]


def _hello(finished: tuple[int, ...] = ()) -> Hello:
    info = NodeInfo(name="n1", hostname="n1", cpus=4, mem_mb=4096)
    return Hello(node=info, finished=[JobExit(id=i, exit_code=0, time=1.0) for i in finished])


async def _scenario(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "wulf.db")
    daemon = Daemon(Config(server=ServerConfig(state_dir=str(tmp_path))), store)
    daemon.load()
    try:
        link = _Link()
        node = await daemon.agent_hello(_hello(), AgentLink(send=link.send, host="h", close=link.close))
        [first] = await daemon.submit(SubmitRequest(jobs=[JobSpec(command="x", cwd="/", cpu=0.1)]), ALICE)
        await daemon._pass()
        assert link.started() == {first}
        await daemon.agent_gone(node, node.link)  # type: ignore[arg-type]
        # jobs wait while the node is down; it comes back with the first job's exit
        spec = [JobSpec(command="y", cwd="/", cpu=0.1) for _ in range(4)]
        small = await daemon.submit(SubmitRequest(jobs=spec), ALICE)
        await daemon._pass()
        link = _Link()
        await daemon.agent_hello(_hello(finished=(first,)), AgentLink(send=link.send, host="h", close=link.close))
        sent = link.started()
        assert sent, "the room the first job left is given at once"
        for i in sent:  # what was sent to the agent is the agent's: running there, not back in line
            job = daemon.jobs[i]
            assert (str(job.state), job.node) == ("running", "n1"), (i, job.state)
        assert all(str(daemon.jobs[i].state) in ("running", "queued") for i in small)
        assert str(daemon.jobs[first].state) == "done"
    finally:
        await daemon.stop()
        store.close()


def test_jobs_sent_to_a_reconnecting_agent_are_not_put_back_in_line(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


class _GatedStore(SqliteStore):
    """The real store, whose updates are durable only once the gate opens (a slow disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.updates = 0

    def update(self, jobs: Sequence[Job], arrays: Sequence[tuple[int, str]] = ()) -> asyncio.Future[None]:
        done = super().update(jobs, arrays)
        self.updates += 1
        gate = self.gate

        async def after_gate() -> None:
            await done
            await gate.wait()

        return asyncio.ensure_future(after_gate())


async def _gated(tmp_path: Path) -> None:
    store = _GatedStore(tmp_path / "wulf.db")
    daemon = Daemon(Config(server=ServerConfig(state_dir=str(tmp_path))), store)
    daemon.load()
    try:
        link = _Link()
        node = await daemon.agent_hello(_hello(), AgentLink(send=link.send, host="h", close=link.close))
        spec = [JobSpec(command="x", cwd="/", cpu=4.0) for _ in range(2)]  # one at a time on 4 cpus
        first, second = await daemon.submit(SubmitRequest(jobs=spec), ALICE)
        passing = asyncio.ensure_future(daemon._pass())
        while not store.updates:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert link.started() == set(), "started before its assignment was committed"
        store.gate.set()
        await passing
        assert link.started() == {first}
        store.gate.clear()
        exiting = asyncio.ensure_future(daemon.agent_message(node, Exited(jobs=[JobExit(id=first, exit_code=0,
                                                                                         time=1.0)])))
        while store.updates < 2:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert not [m for m in link.sent if m["type"] == "ack"], "an exit acknowledged before it was committed"
        assert link.started() == {first}, "the next job started before its assignment was committed"
        assert store.updates == 2  # the exit and the next placement: one commit
        store.gate.set()
        await exiting
        assert link.started() == {first, second}
        assert [m["ids"] for m in link.sent if m["type"] == "ack"] == [[first]]
        assert link.sent[-1]["type"] == "ack"  # after the start of the job that took its room
    finally:
        await daemon.stop()
        store.close()


def test_starts_and_acks_wait_for_their_commit(tmp_path: Path) -> None:
    asyncio.run(_gated(tmp_path))
