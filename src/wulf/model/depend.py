"""Job dependencies: what a job waits for (``afterok:12:13,afterany:14``), parsed, written back, and
decided from the states of the jobs it names. Pure: the CLI (early usage errors) and the server share it.

A dependency is a conjunction of clauses; each clause is a kind and a set of job ids, and holds once
every job of the set has ended as the kind asks. :func:`verdict` is the one check, over a set of ids,
so that a set can be widened (an array as a dependency means all its tasks) without touching the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

from wulf.errors import UsageError
from wulf.model.job import JobState

#: at most this many job ids in one job's dependency (a bound on what a user can make the server keep)
MAX_IDS = 1000


class After(StrEnum):
    OK = "afterok"  # the jobs ended done
    ANY = "afterany"  # the jobs ended, however
    NOTOK = "afternotok"  # the jobs ended failed or cancelled


LABEL = {After.OK: "after ok", After.ANY: "after any", After.NOTOK: "after not ok"}
#: the words a Slurm user may write for each kind
_ALIASES = {"afterok": After.OK, "afterany": After.ANY, "afternotok": After.NOTOK}

Clause = tuple[After, frozenset[int]]
Dependency = tuple[Clause, ...]


class Verdict(StrEnum):
    MET = "met"
    WAIT = "wait"
    NEVER = "never"


def _ids(text: str, what: str) -> list[int]:
    ids = []
    for word in text.split(":"):
        word = word.strip()
        if not word.isascii() or not word.isdigit() or int(word) <= 0:
            raise UsageError(f"{what}: {word!r} is not a job id (a positive whole number)")
        ids.append(int(word))
    return ids


def parse(text: str) -> Dependency:
    """``afterok:12:13,afterany:14`` (Slurm's form; PBS's ``depend=`` is the same) as clauses;
    UsageError for anything else. Clauses of one kind are merged."""
    if "?" in text:
        raise UsageError("dependency: '?' (any one of) is not supported; join clauses with ','")
    merged: dict[After, set[int]] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        kind, sep, rest = part.partition(":")
        after = _ALIASES.get(kind.strip().lower())
        if after is None or not sep:
            raise UsageError(f"dependency {part[:60]!r}: write afterok:ID[:ID...], afterany:ID... or "
                             f"afternotok:ID... (clauses joined by ',')")
        merged.setdefault(after, set()).update(_ids(rest, f"dependency {part[:60]!r}"))
    total = sum(len(s) for s in merged.values())
    if total > MAX_IDS:
        raise UsageError(f"a job may wait for at most {MAX_IDS} jobs, not {total}")
    return tuple((k, frozenset(v)) for k, v in merged.items() if v)


def of_ids(kind: After, words: Iterable[str]) -> str:
    """The text of one clause from ``--after 12,13`` style words (ids joined by ',' or ':')."""
    ids = [w for word in words for w in word.replace(",", ":").split(":") if w.strip()]
    if not ids:
        raise UsageError(f"--{LABEL[kind].replace(' ', '-')} needs job ids")
    return f"{kind}:" + ":".join(ids)


def text(dep: Dependency) -> str:
    """The dependency as stored and shown: ``afterok:12:13,afterany:14`` (ids in order)."""
    return ",".join(f"{kind}:" + ":".join(map(str, sorted(ids))) for kind, ids in dep)


def ids_of(dep: Dependency) -> frozenset[int]:
    return frozenset(i for _, ids in dep for i in ids)


def clause_verdict(kind: After, states: Iterable[JobState]) -> Verdict:
    """Whether jobs in these states satisfy ``kind``: every one ended as asked (MET), one ended
    otherwise (NEVER), or some have not ended yet (WAIT)."""
    waiting = False
    for state in states:
        if state is JobState.DONE:
            if kind is After.NOTOK:
                return Verdict.NEVER
        elif state is JobState.FAILED or state is JobState.CANCELLED:
            if kind is After.OK:
                return Verdict.NEVER
        else:
            waiting = True
    return Verdict.WAIT if waiting else Verdict.MET


def verdict(dep: Dependency, state_of: Callable[[int], JobState]) -> tuple[Verdict, int | None, After | None]:
    """The dependency's verdict from its jobs' states, and the job (and kind) it is about: the one that
    makes it NEVER, or the first it still waits for."""
    wait: tuple[int, After] | None = None
    for kind, ids in dep:
        for i in sorted(ids):
            v = clause_verdict(kind, (state_of(i),))
            if v is Verdict.NEVER:
                return Verdict.NEVER, i, kind
            if v is Verdict.WAIT and wait is None:
                wait = (i, kind)
    if wait is not None:
        return Verdict.WAIT, wait[0], wait[1]
    return Verdict.MET, None, None


_ENDED = {JobState.DONE: "succeeded", JobState.FAILED: "failed", JobState.CANCELLED: "was cancelled"}


def never_reason(job_id: int, state: JobState) -> str:
    return f"dependency never satisfied: job {job_id} {_ENDED.get(state, str(state))}"


def wait_reason(job_id: int, kind: After) -> str:
    return f"waiting for job {job_id} ({LABEL[kind]})"
