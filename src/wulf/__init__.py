"""wulf: a cluster job manager. ``from wulf import Client`` is its Python API (docs/python-api.md).

The API and the errors are imported when first asked for, not here: every command imports this
package, and a command must start fast.
"""

from __future__ import annotations

__version__ = "0.3.0"

TYPE_CHECKING = False  # (not imported from typing: that costs a command its start-up)
if TYPE_CHECKING:
    from typing import Any

    from wulf.api import (
        AccountingRecord,
        AsyncClient,
        Changed,
        Client,
        Job,
        JobState,
        Node,
        OutputChunk,
        Queue,
        UserSummary,
        Whoami,
    )
    from wulf.errors import (
        Forbidden,
        NotFound,
        Refused,
        ServerUnreachable,
        SlowDown,
        TimedOut,
        Unauthenticated,
        UsageError,
        WulfError,
    )

__all__ = [  # the API's names, the errors' names, the version
    "AccountingRecord", "AsyncClient", "Changed", "Client", "Job", "JobState", "Node", "OutputChunk", "Queue",
    "UserSummary", "Whoami",
    "Forbidden", "NotFound", "Refused", "ServerUnreachable", "SlowDown", "TimedOut", "Unauthenticated", "UsageError",
    "WulfError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__[:11]:
        import wulf.api

        return getattr(wulf.api, name)
    if name in __all__[11:-1]:
        import wulf.errors

        return getattr(wulf.errors, name)
    raise AttributeError(f"module 'wulf' has no attribute {name!r}")
