"""``wulf.Client``: the documented Python API (see docs/python-api.md).

It is a typed layer over :class:`wulf.client.Client`, the small standard-library client the commands
use: the same transport (the local Unix socket, or TCP with a credential the wulf agent of this machine
signs, or ``$WULF_TOKEN``), the same retries (an answer lost to a dropped connection; a server that asks
to slow down), the same submission body as ``qr``, and the same errors (:mod:`wulf.errors`: a
:class:`~wulf.errors.NotFound` is what makes ``jstat 99`` exit 4). What it adds: keyword arguments
checked as ``qr`` checks its options, and frozen dataclasses instead of JSON dicts.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wulf.api import spec
from wulf.api.records import AccountingRecord, Changed, Job, Node, OutputChunk, Queue, UserSummary, Whoami
from wulf.client import OUTPUT_CHUNK, quote
from wulf.client import Client as LowClient
from wulf.errors import TimedOut, UsageError
from wulf.model.job import JobState

if TYPE_CHECKING:
    from typing import Self

    from typing_extensions import Unpack

JobRefs = int | str | Iterable[int | str]
"""Jobs as the actions take them: an id, ``"ID[i]"`` (task i of array ID), or several of those. An
array's id names all its tasks."""

Time = float | datetime.datetime
"""A moment: a Unix time, or a datetime (naive ones are local time)."""

ONE_BY_ONE = 20
"""Up to this many jobs, :meth:`Client.wait` reads each by its id; more, from the listing."""
SPARSE = 4
"""...unless their ids are spread so far apart that the listing holds this many others for each."""
CUT = "…"
"""How the listing ends a command it cuts short (wulf.server.views.LIST_COMMAND_CHARS)."""

#: per action: the key of the jobs it changed, and of those it left as they were
_ACTIONS = {
    "cancel": ("cancelled", "already_ended"),
    "hold": ("held", "not_queued"),
    "release": ("released", "not_held"),
    "renice": ("reniced", "not_running"),
    "signal": ("signalled", "not_running"),
}


def refs(ids: JobRefs) -> list[int | str]:
    """``ids`` as the API takes them: whole numbers as ints, ``ID[i]`` as text (UsageError otherwise)."""
    from wulf.model.array import parse_job_ref

    items: Iterable[int | str] = [ids] if isinstance(ids, (int, str)) else ids
    out: list[int | str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise UsageError(f"{item!r} is not a job id")
        if isinstance(item, int):
            if item < 1:
                raise UsageError(f"{item} is not a job id (job ids are whole numbers from 1)")
            out.append(item)
            continue
        job_id, index = parse_job_ref(item.strip())
        out.append(job_id if index is None else f"{job_id}[{index}]")
    if not out:
        raise UsageError("no job ids given")
    return out


def states(state: str | Iterable[str]) -> frozenset[JobState]:
    """Job states by name (UsageError for a name that is none)."""
    names = [state] if isinstance(state, str) else list(state)
    try:
        return frozenset(JobState(s) for s in names)
    except ValueError:
        raise UsageError(f"not a job state in {names!r} (states: {', '.join(JobState)})") from None


def unix_time(when: Time | None) -> float:
    if when is None:
        return 0.0
    if isinstance(when, datetime.datetime):
        return when.timestamp()
    return float(when)


class Client:
    """A connection to the wulf server, as the user running this process.

    ``url``: ``unix:PATH``, ``http://HOST:PORT`` or ``https://HOST:PORT``; by default ``$WULF_SERVER``,
    the configuration's server, or the local ``wulf up``. ``token``: an API token (default
    ``$WULF_TOKEN``). ``transport``: makes the low-level client (tests use one that signs as another
    user). One Client is one connection, for one thread at a time; use it as a context manager, or
    :meth:`close` it. Every method raises :class:`wulf.errors.WulfError` subclasses, as the commands'
    exit codes say: UsageError (2), ServerUnreachable (3), NotFound (4), Refused/Forbidden (5),
    TimedOut (124)."""

    def __init__(self, url: str | None = None, *, timeout: float = 30.0, token: str | None = None,
                 transport: Callable[[], LowClient] | None = None) -> None:
        self.low = transport() if transport is not None else LowClient(url, timeout)
        if token is not None:
            self.low.token = token.strip()

    @property
    def url(self) -> str:
        return self.low.url

    def close(self) -> None:
        self.low.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ submitting

    def submit(self, command: str | None = None, *, script: str | None = None, env: Mapping[str, str] | None = None,
               key: str = "", **options: Unpack[spec.SubmitOptions]) -> int:
        """Queue one job: a ``command`` (run with ``/bin/sh -c``) or a ``script`` (run by its ``#!``
        line); returns its id. With ``array="1-100%10"`` it is an array of one task per index (at most
        10 at once), and the id is the array's: it names all the tasks (``wait``, ``cancel``), and task
        i is ``f"{id}[{i}]"``; each task sees ``WULF_ARRAY_TASK_ID``.

        Options (as ``qr``'s): ``cpu``, ``mem`` (MB, or ``"2G"``), ``queue``, ``name``, ``cwd`` (default:
        this process's), ``output`` (default ``wulf-<id>.out`` in cwd), ``after`` / ``after_any`` /
        ``after_notok`` (job ids it waits for), ``depend`` (Slurm's ``afterok:12:13`` form),
        ``retries``, ``time_limit`` / ``cputime_limit`` (seconds or ``"HH:MM:SS"``), ``mem_limit``,
        ``nice``, ``constraint``, ``keep_script``, ``mail_type``, ``mail_user``. ``env``: the job's
        environment (default: all of this process's). ``key``: an idempotency key, to submit again
        after an error without queueing twice. ``#SBATCH``/``#PBS`` lines of a script are not read
        here (``qr -s`` and ``sbatch`` read them): give the options as arguments."""
        opts = spec.Options(**options)
        [job_id] = self._submit([spec.one(command, script, opts, spec.common(opts))], env, key)
        return job_id

    def submit_many(self, commands: Iterable[str], *, env: Mapping[str, str] | None = None, key: str = "",
                    **options: Unpack[spec.SubmitOptions]) -> list[int]:
        """Queue one job per command, with the same options, in one submission (all or none); returns
        their ids in order. Each job is named after its program unless ``name`` is given."""
        opts = spec.Options(**options)
        shared = spec.common(opts)
        jobs = [spec.one(c, None, opts, shared) for c in commands]
        if not jobs:
            raise UsageError("no commands given")
        if len(jobs) > 1 and opts.array:
            raise UsageError("an array queues one command as many tasks: submit each array on its own")
        return self._submit(jobs, env, key)

    def _submit(self, jobs: list[dict[str, Any]], env: Mapping[str, str] | None, key: str) -> list[int]:
        return self.low.submit(jobs, spec.environment(env), key=key)

    # ------------------------------------------------------------------ looking

    def job(self, job_id: int) -> Job:
        """One job, running, waiting or ended (NotFound if there is none)."""
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1:
            raise UsageError(f"{job_id!r} is not a job id (a whole number from 1)")
        return Job.from_json(self.low.job(job_id))

    def jobs(self, user: str = "", *, queue: str = "", state: str | Iterable[str] = (),
             ended: bool = True) -> Iterator[Job]:
        """The jobs the server keeps (``user``: only theirs; ``""``: everyone's), by id, a page at a
        time; ``queue``: ``NAME`` or ``USER:NAME``; ``state``: only these states; ``ended``: also those
        that have ended and the server still keeps (for older ones, see :meth:`accounting`)."""
        wanted = states(state)
        after: int | None = 0
        while after is not None:
            page, after = self.jobs_page(user, queue, ended, after)
            yield from (job for job in page if not wanted or job.state in wanted)

    def jobs_page(self, user: str, queue: str, ended: bool, after: int) -> tuple[list[Job], int | None]:
        """One page of :meth:`jobs` (all states): the jobs after id ``after``, and the ``after`` of the
        next page (None at the end)."""
        q = f"/api/v1/jobs?all={int(ended)}&user={quote(user)}&queue={quote(queue)}"
        page = self.low.get(q + (f"&after={int(after)}" if after else ""))
        nxt = page.get("next")
        return [Job.from_json(j) for j in page["jobs"]], None if nxt is None else int(nxt)

    def nodes(self) -> list[Node]:
        return [Node.from_json(n) for n in self.low.nodes()]

    def queues(self, user: str = "") -> list[Queue]:
        """The queues (of ``user``; ``""``: everyone's) and how many of their jobs wait and run."""
        return [Queue.from_json(q) for q in self.low.queues(user)]

    def whoami(self) -> Whoami:
        return Whoami.from_json(self.low.whoami())

    # ------------------------------------------------------------------ waiting and output

    def wait(self, ids: JobRefs, *, timeout: float | None = None) -> list[Job]:
        """Block until every job named has ended; returns them (an array's id: all its tasks), as they
        ended. TimedOut (exit code 124, as ``qwait --timeout``) if ``timeout`` seconds pass first. A
        server that restarts meanwhile is waited for."""
        named = refs(ids)
        reply = self.low.wait(named, timeout=timeout)
        if not reply["done"]:
            left = [j["id"] for j in reply["jobs"] if j["state"] not in ("done", "failed", "cancelled")]
            raise TimedOut(f"{len(left)} of {len(reply['jobs'])} jobs had not ended after {timeout:g} s "
                           f"(job {left[0]} is {self._state_of(reply, left[0])})")
        return self.jobs_by_id(list(dict.fromkeys(int(j["id"]) for j in reply["jobs"])))

    def jobs_by_id(self, ids: Sequence[int]) -> list[Job]:
        """The jobs of these ids, in order. Many of close ids (an array's tasks, a fan-out) are read from
        the listing a page at a time, not one request each; what the listing has not (a job the server
        keeps no more in memory, a command the listing cuts short) is asked for by id."""
        if len(ids) <= ONE_BY_ONE or max(ids) - min(ids) >= SPARSE * len(ids):
            return [self.job(i) for i in ids]
        wanted, top = set(ids), max(ids)
        found: dict[int, Job] = {}
        after: int | None = min(ids) - 1
        while after is not None and after < top:
            page, after = self.jobs_page("", "", True, after)
            found.update((j.id, j) for j in page if j.id in wanted and not j.command.endswith(CUT))
        return [found[i] if i in found else self.job(i) for i in ids]

    @staticmethod
    def _state_of(reply: dict[str, Any], job_id: int) -> str:
        return next(str(j["state"]) for j in reply["jobs"] if j["id"] == job_id)

    def read_output(self, job_id: int, offset: int = 0, limit: int = OUTPUT_CHUNK) -> OutputChunk:
        """Up to ``limit`` bytes of a job's output from ``offset`` (from its end when negative), read
        on its node as its owner (``jtail``)."""
        return OutputChunk.from_json(self.low.output(job_id, offset, limit))

    def output(self, job_id: int) -> bytes:
        """All of a job's output written so far (a job that has not started yet has none)."""
        parts = []
        offset = 0
        while True:
            chunk = self.read_output(job_id, offset)
            parts.append(chunk.data)
            offset = chunk.next
            if not chunk.data or offset >= chunk.size:
                return b"".join(parts)

    def follow(self, job_id: int, offset: int = 0, every: float = 0.5) -> Iterator[bytes]:
        """A job's output as it is written (``jtail -f``), until the job has ended and all of it is
        read; a job still waiting to start is waited for."""
        return self.low.follow_output(job_id, offset, every)

    # ------------------------------------------------------------------ acting on jobs

    def _act(self, action: str, answer: dict[str, Any]) -> Changed:
        done, left = _ACTIONS[action]
        return Changed(tuple(answer.get(done, ())), tuple(answer.get(left, ())))

    def cancel(self, ids: JobRefs) -> Changed:
        """Cancel jobs (``qcancel``): waiting ones leave the queue, running ones are stopped."""
        return self._act("cancel", self.low.cancel(refs(ids)))

    def hold(self, ids: JobRefs) -> Changed:
        """Keep waiting jobs from starting until :meth:`release` (``qhold``)."""
        return self._act("hold", self.low.hold(refs(ids)))

    def release(self, ids: JobRefs) -> Changed:
        return self._act("release", self.low.release(refs(ids)))

    def renice(self, ids: JobRefs, nice: int) -> Changed:
        """Set running jobs' niceness (``jnice``; only administrators lower it)."""
        return self._act("renice", self.low.renice(refs(ids), nice))

    def signal(self, ids: JobRefs, signum: int) -> Changed:
        """Send a signal to running jobs (``jkill``)."""
        return self._act("signal", self.low.signal(refs(ids), signum))

    # ------------------------------------------------------------------ accounting

    def accounting(self, user: str = "", *, all_users: bool = False, start: Time | None = None,
                   end: Time | None = None, states: Sequence[str] = (), queue: str = "",
                   ids: Iterable[int] = ()) -> list[AccountingRecord]:
        """Ended jobs (``jacct``), by end time: the caller's (or ``user``'s, or with ``all_users``
        everyone's) that ended from ``start`` to ``end`` (default: all kept, until now); or the jobs
        ``ids`` whenever they ended."""
        rows = self.low.accounting(user, all_users, unix_time(start), unix_time(end), states, queue, ids)
        return [AccountingRecord.from_json(r) for r in rows]

    def accounting_summary(self, user: str = "", *, all_users: bool = False, start: Time | None = None,
                           end: Time | None = None, states: Sequence[str] = (), queue: str = "") -> list[UserSummary]:
        """Per user totals of what :meth:`accounting` lists: jobs, cpu hours, mean wait, cpu efficiency."""
        rows = self.low.accounting_summary(user, all_users, unix_time(start), unix_time(end), states, queue)
        return [UserSummary.from_json(r) for r in rows]
