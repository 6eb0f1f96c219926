"""Who waits for whom: the server's index of dependents still waiting (see wulf.model.depend).

A dependent that waits is queued but out of its queue's line (the policy never sees it); it is
indexed under every job it names that has not ended, so that the end of a job finds its dependents
at once. Rebuilt from the stored jobs at a restart (their ``depend`` text).
"""

from __future__ import annotations

from wulf.model.depend import Dependency, parse


class Waits:
    def __init__(self) -> None:
        self.deps: dict[int, Dependency] = {}  # waiting dependent -> what it waits for
        self.reasons: dict[int, str] = {}  # waiting dependent -> why, for jstat
        self._by: dict[int, set[int]] = {}  # job -> the dependents that wait for it

    def __len__(self) -> int:
        return len(self.deps)

    def waiting(self, job_id: int) -> bool:
        return job_id in self.deps

    def add(self, job_id: int, text: str, reason: str) -> Dependency:
        """``job_id`` waits for what ``text`` names (parsed); indexed under each job it names."""
        dep = parse(text)
        self.deps[job_id] = dep
        self.reasons[job_id] = reason
        for _, ids in dep:
            for i in ids:
                self._by.setdefault(i, set()).add(job_id)
        return dep

    def drop(self, job_id: int) -> None:
        """``job_id`` waits no more (it may start, or it has ended)."""
        dep = self.deps.pop(job_id, None)
        self.reasons.pop(job_id, None)
        if dep is None:
            return
        for _, ids in dep:
            for i in ids:
                s = self._by.get(i)
                if s is not None:
                    s.discard(job_id)
                    if not s:
                        del self._by[i]

    def dependents(self, job_id: int) -> list[int]:
        """The dependents waiting for ``job_id``, oldest first."""
        s = self._by.get(job_id)
        return sorted(s) if s else []
