"""Mail directives of the three systems (``#SBATCH --mail-type/--mail-user``, ``#PBS -m/-M``, ``#$ -m/-M``)
in ``qr --mail-type/--mail-user`` terms. What wulf does not mail about (Slurm's TIME_LIMIT, Grid Engine's
suspension) is a warning, never an error: the rest still mails."""

from __future__ import annotations

from wulf.compat.request import DirectiveError, Request

SLURM_ONLY = ("INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50")
SLURM_TYPES = ("NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "ARRAY_TASKS")
#: PBS's and Grid Engine's mail points: a(bort) b(egin) e(nd) n(one); PBS Pro's j (subjobs), Grid Engine's s(uspend)
POINTS = {"a": "FAIL", "b": "BEGIN", "e": "END", "j": "ARRAY_TASKS"}


def slurm_types(req: Request, value: str, what: str) -> None:
    """``--mail-type=BEGIN,END,...``."""
    kept = []
    for item in (t.strip().upper() for t in value.split(",") if t.strip()):
        if item in SLURM_TYPES:
            kept.append(item)
        elif item in SLURM_ONLY:
            req.note(what, f"wulf does not mail about {item}; the other types still mail", strict=False)
        else:
            raise DirectiveError(f"{what}: {item!r} is not a mail type ({', '.join(SLURM_TYPES)})")
    req.mail_type = ",".join(kept) or "NONE"


def points(req: Request, value: str, what: str, sge: bool) -> None:
    """``-m abe`` (``-m n``: none); Grid Engine also takes a comma list and ``s`` (suspension)."""
    letters = value.replace(",", "").strip()
    if not letters:
        raise DirectiveError(f"{what}: no mail points (a, b, e or n)")
    kept = []
    for ch in letters:
        if ch in POINTS and not (sge and ch == "j"):
            kept.append(POINTS[ch])
        elif ch == "n":
            kept = []
        elif sge and ch == "s":
            req.note(what, "wulf does not suspend jobs, so it does not mail about that", strict=False)
        else:
            raise DirectiveError(f"{what}: {ch!r} is not a mail point (a, b, e{', s' if sge else ', j'} or n)")
    req.mail_type = ",".join(dict.fromkeys(kept)) or "NONE"


def users(req: Request, value: str, what: str) -> None:
    """``-M user@host[,user@host...]`` (and Slurm's --mail-user): wulf mails one address, the first."""
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if not addresses:
        raise DirectiveError(f"{what}: no address")
    if len(addresses) > 1:
        req.note(what, f"wulf mails one address: {addresses[0]}", strict=False)
    req.mail_user = addresses[0]
