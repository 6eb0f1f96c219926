"""Open files: the daemons raise their limit, and what they start gets back the one they were given.

A server keeps a connection per node and per client; an agent keeps a few files per running job. The
usual soft limit of 1,024 (systemd's default, kept low for programs that use ``select``) is too low
for either at scale, while the hard limit is far higher. So each daemon raises its soft limit to the
hard one when it starts, and the jobs and sessions it starts get the soft limit back, so that they
run with what a login gives them, as systemd advises a service that does this.
"""

from __future__ import annotations

import resource

#: the highest soft limit set when the hard limit is unlimited
_CEILING = 1 << 20

#: the soft limit of open files this process was given, before :func:`raise_open_files` (None: not raised)
given: int | None = None


def raise_open_files() -> None:
    """Raise this process's soft limit of open files to its hard limit (remembering the one it had)."""
    global given
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _CEILING if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return
    if given is None:
        given = soft


def restore_in_child() -> None:
    """Give the calling process (a child between fork and exec) the soft limit its parent was given."""
    if given is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (given, hard))
