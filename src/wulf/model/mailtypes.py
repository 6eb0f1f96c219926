"""When a job's own mail goes out (``qr --mail-type``), as Slurm's ``--mail-type`` names it.

``BEGIN`` when it starts, ``END`` when it ends (however), ``FAIL`` when it fails (one mail at the end
either way: the failure's, if both are asked for), ``REQUEUE`` when it goes back in line to run again,
``ALL`` the four; ``NONE`` none. ``ARRAY_TASKS``: a task of an array mails about itself, not only the
array as a whole. Kept as a canonical comma list in that order (``""``: no mail). Pure, and light
enough for qr to import.
"""

from __future__ import annotations

from wulf.errors import UsageError

TYPES = ("BEGIN", "END", "FAIL", "REQUEUE", "ARRAY_TASKS")
ALL = ("BEGIN", "END", "FAIL", "REQUEUE")


def parse_mail_types(text: str, what: str = "--mail-type") -> str:
    """``text`` (``BEGIN,END``, case-insensitive) as a canonical list; UsageError for a type wulf does
    not know."""
    chosen: set[str] = set()
    items = [t.strip().upper() for t in text.split(",")]
    if not text.strip() or "" in items:
        raise UsageError(f"{what}: {text!r} is not a list of {', '.join(TYPES)}, ALL or NONE")
    for item in items:
        if item == "ALL":
            chosen.update(ALL)
        elif item == "NONE":
            chosen.clear()
        elif item in TYPES:
            chosen.add(item)
        else:
            raise UsageError(f"{what}: {item!r} is not one of {', '.join(TYPES)}, ALL, NONE")
    return ",".join(t for t in TYPES if t in chosen)


def mail_types(canonical: str) -> frozenset[str]:
    """The types of a canonical list (as a job keeps it)."""
    return frozenset(canonical.split(",")) if canonical else frozenset()
