"""Reports as deltas (issue 16 §2): a node's outside work is sent whole once, then only what changed.

A node has tens of outside process clusters, most of them idle from one report to the next; sending
and parsing all of them every few seconds was most of what a server of a thousand nodes did. So each
report on a connection is numbered; the first, and any the server asks for (:class:`wulf.protocol.Resync`),
is full, and the others carry the clusters that are new or changed and the keys of those gone since the
report before. Both ends keep the same table:

- the agent's :class:`Deltas` keeps what it has sent on this connection and makes the next report;
- the server's :class:`Outside` keeps the keys the node has now, takes in a report only if it follows
  the last one taken in, and else says a full report is needed (so a lost or reordered delta never
  leaves a silently wrong view: the server goes on with the last good one until the full report comes).

The connection is ordered, so a delta goes astray only if the server could not take in a report (it
was malformed, or too large) or a bug; a reconnection always starts with a full report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from wulf.protocol import Cluster, JobUse, NodeSample, Report

ASK_AGAIN = 10
"""Deltas refused in a row after which the server asks for a full report again (should the first ask
have gone astray)."""


class Deltas:
    """The agent's side: what the server has of this node's outside work, and the next report."""

    def __init__(self) -> None:
        self.sent: dict[str, Cluster] = {}
        self.seq = 0
        self.full_next = True

    def resync(self) -> None:
        """The next report is full (a new connection, or the server asked)."""
        self.full_next = True

    def report(self, sample: NodeSample, jobs: Sequence[JobUse], clusters: Iterable[Cluster]) -> Report:
        now = {c.key: c for c in clusters}
        base, self.seq = self.seq, self.seq + 1
        if self.full_next:
            self.full_next = False
            self.sent = now
            return Report(sample=sample, jobs=list(jobs), clusters=list(now.values()), seq=self.seq)
        sent = self.sent
        changed = [c for key, c in now.items() if sent.get(key) != c]
        gone = [key for key in sent if key not in now]
        self.sent = now
        return Report(sample=sample, jobs=list(jobs), clusters=changed, seq=self.seq, base=base, full=False,
                      gone=gone)


class Taken(Enum):
    APPLIED = "applied"  # the report's clusters are the node's outside work now (with ``present``)
    REFUSED = "refused"  # a delta out of turn: the view stays as it was
    ASK = "ask"  # refused, and the agent is to be asked for a full report


@dataclass(eq=False)
class Outside:
    """The server's side: which clusters the node has now (their use is in their jobs), and which
    report was taken in last (None: a full report is awaited)."""

    present: set[str] = field(default_factory=set)
    seq: int | None = None
    refused: int = 0

    def lost(self) -> None:
        """The connection went (or a report could not be read): only a full report is taken in next."""
        self.seq = None

    def take(self, report: Report) -> Taken:
        if report.full:
            self.present = {c.key for c in report.clusters}
        elif self.seq is None or report.base != self.seq:
            self.seq = None
            self.refused += 1
            return Taken.ASK if self.refused % ASK_AGAIN == 1 else Taken.REFUSED
        else:
            present = self.present
            present.difference_update(report.gone)
            present.update(c.key for c in report.clusters)
        self.seq, self.refused = report.seq, 0
        return Taken.APPLIED
