"""wulf's Python API: :class:`Client`, :class:`AsyncClient`, and the records they answer with.

Import it as ``from wulf import Client, AsyncClient`` (see docs/python-api.md). The errors are those of
:mod:`wulf.errors`, the ones the commands turn into their exit codes.
"""

from wulf.api.aio import AsyncClient
from wulf.api.client import Client, JobRefs
from wulf.api.records import AccountingRecord, Changed, Job, Node, OutputChunk, Queue, UserSummary, Whoami
from wulf.api.spec import SubmitOptions
from wulf.model.job import JobState

__all__ = [
    "AccountingRecord", "AsyncClient", "Changed", "Client", "Job", "JobRefs", "JobState", "Node", "OutputChunk",
    "Queue", "SubmitOptions", "UserSummary", "Whoami",
]
