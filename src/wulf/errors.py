"""One error hierarchy for wulf.

Every error a user can cause is a :class:`WulfError`. The command-line tools print its message as a
single line on stderr and exit with its ``exit_code``; they never show a traceback for one.

Exit codes (documented in the README):

====  ==========================================================
1     a job failed / generic failure reported by the server
2     bad usage or bad input (the command line, a file, a size)
3     the server cannot be reached
4     not found (unknown job id, node or queue)
5     refused by the server (not allowed, not authenticated, invalid state)
124   gave up waiting (qwait --timeout; the Python API's ``wait(timeout=)``)
====  ==========================================================
"""

from __future__ import annotations


class WulfError(Exception):
    """A failure with a message meant for people."""

    exit_code = 1
    #: whether trying the same thing again later may succeed
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(WulfError):
    exit_code = 2


class ConfigError(UsageError):
    pass


class ServerUnreachable(WulfError):
    exit_code = 3
    retryable = True


class NotFound(WulfError):
    exit_code = 4


class Refused(WulfError):
    exit_code = 5


class Unauthenticated(Refused):
    """The server does not know who asks: no identity, or one it cannot check."""


class Forbidden(Refused):
    """The server knows who asks, and they may not do this (not their job, not an administrator)."""


class SlowDown(WulfError):
    """The caller has used up their request budget; ``retry_after`` seconds from now they may go on."""

    retryable = True

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TimedOut(WulfError):
    """A wait ran out of time before every job had ended (as ``qwait --timeout``, exit 124)."""

    exit_code = 124
    retryable = True


class InvalidTransition(Exception):
    """A job state change that the transition table forbids: a bug, never a user mistake."""


ERRORS_BY_KIND: dict[str, type[WulfError]] = {
    "usage": UsageError,
    "not_found": NotFound,
    "refused": Refused,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "slow_down": SlowDown,
    "error": WulfError,
}


def error_from_kind(kind: str, message: str) -> WulfError:
    return ERRORS_BY_KIND.get(kind, WulfError)(message)
