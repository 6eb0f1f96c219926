"""wulf's Python API: :class:`Client`, :class:`AsyncClient`, and the records they answer with.

Import it as ``from wulf import Client, AsyncClient`` (see docs/python-api.md). The errors are those of
:mod:`wulf.errors`, the ones the commands turn into their exit codes. :class:`AsyncClient` (and
:mod:`asyncio`, a tenth of a second to import) comes only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wulf.api.client import Client, JobRefs
from wulf.api.records import AccountingRecord, Changed, Job, Node, OutputChunk, Queue, UserSummary, Whoami
from wulf.api.spec import SubmitOptions
from wulf.model.job import JobState

if TYPE_CHECKING:
    from wulf.api.aio import AsyncClient

__all__ = [
    "AccountingRecord", "AsyncClient", "Changed", "Client", "Job", "JobRefs", "JobState", "Node", "OutputChunk",
    "Queue", "SubmitOptions", "UserSummary", "Whoami",
]


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from wulf.api.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'wulf.api' has no attribute {name!r}")
