"""Warning signals and self-checkpointing (issue 13 §2): what ``qr --signal`` and ``qr --checkpoint`` say,
checked, and in the one form the server stores and the agent reads. Pure: no I/O.

``--signal SIG@SECONDS`` (Slurm's ``--signal``): the job gets SIG that many seconds before its time
limit. ``--checkpoint SIG[@INTERVAL]`` (HTCondor's self-checkpointing): the job gets SIG every INTERVAL
and before a stop wulf chooses (its time limit); a run that then exits with the checkpoint exit code
is queued again, not failed. Both are stored as ``NAME@SECONDS`` (``USR1@60``), or ``NAME`` alone.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from typing import Any, Final

from wulf.errors import UsageError

DEFAULT_EXIT: Final = 85
"""The exit code that means "I saved my state: run me again" ([scheduler] checkpoint_exit_code)."""
EXIT_ENV: Final = "WULF_CHECKPOINT_EXIT"
"""The job's own checkpoint exit code, when its environment has it (and what wulf tells the job)."""
CRIU: Final = "criu"
"""``--checkpoint criu``: wulf dumps the process tree itself (refused where CRIU cannot, see wulf.cli.criu)."""
MAX_SECONDS: Final = 100 * 365 * 86400.0

# signals a job cannot catch: a warning it cannot act on is a mistake
_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


@dataclass(frozen=True)
class Notice:
    """A signal and its time: seconds before the time limit (``--signal``), or the interval between two
    checkpoints (``--checkpoint``; None: only before a stop)."""

    signum: int
    seconds: float | None

    def text(self) -> str:
        """The stored form: ``USR1@60``, ``USR1``."""
        name = signal.Signals(self.signum).name.removeprefix("SIG")
        if self.seconds is None:
            return name
        whole = int(self.seconds)
        return f"{name}@{whole if whole == self.seconds else self.seconds}"


def signal_number(text: str, what: str) -> int:
    """A signal by name (``USR1``, ``SIGUSR1``, any case) or number; UsageError for one that is not, or
    that a job cannot catch (KILL, STOP)."""
    t = text.strip()
    try:
        num = int(t) if t.isascii() and t.isdigit() else signal.Signals["SIG" + t.upper().removeprefix("SIG")].value
        sig = signal.Signals(num)
    except (KeyError, ValueError):
        raise UsageError(f"{what}: {text!r} is not a signal (a name like USR1 or a number)") from None
    if sig in _UNCATCHABLE:
        raise UsageError(f"{what}: {sig.name} cannot be caught by the job: give one it can act on (USR1, TERM, ...)")
    return int(sig)


def _seconds(text: str, what: str) -> float:
    from wulf.policy.limits import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise UsageError(f"{what}: {text!r} is more than a century")
    return seconds


def parse_signal(text: str, what: str = "--signal") -> Notice:
    """``SIG@SECONDS`` (the seconds as ``--time`` takes them: ``90``, ``1:30``); UsageError if not."""
    sig, at, when = text.partition("@")
    if not at or not when.strip():
        raise UsageError(f"{what}: {text!r} is not SIG@SECONDS (USR1@60: SIGUSR1 a minute before the time limit)")
    return Notice(signal_number(sig, what), _seconds(when, what))


def parse_checkpoint(text: str, what: str = "--checkpoint") -> Notice | None:
    """``SIG[@INTERVAL]``; None for ``criu`` (the caller decides whether CRIU can); UsageError if neither."""
    if text.strip().lower() == CRIU:
        return None
    sig, at, every = text.partition("@")
    if at and not every.strip():
        raise UsageError(f"{what}: {text!r} is not SIG[@INTERVAL] (USR1@30:00: SIGUSR1 every half hour)")
    return Notice(signal_number(sig, what), _seconds(every, what) if at else None)


def exit_code_of(env: dict[str, str] | None, default: int, what: str = EXIT_ENV) -> int:
    """The job's checkpoint exit code: its environment's ``WULF_CHECKPOINT_EXIT``, else ``default``."""
    text = (env or {}).get(EXIT_ENV)
    if text is None:
        return default
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or not 1 <= int(t) <= 255:
        raise UsageError(f"{what}: {text!r} is not an exit code (1 to 255)")
    return int(t)


def start_fields(warn_signal: str, checkpoint: str, exit_code: int, checkpoints: int) -> dict[str, Any]:
    """What an agent is told of a job's stored warning signal and checkpoint (StartJob's fields): none
    for a job without them. A run after a checkpoint appends to the earlier runs' output."""
    out: dict[str, Any] = {}
    if warn_signal:
        notice = parse_signal(warn_signal)
        out.update(warn_signal=notice.signum, warn_before=notice.seconds)
    if checkpoint:
        ckpt = parse_checkpoint(checkpoint)
        if ckpt is not None:
            out.update(checkpoint_signal=ckpt.signum, checkpoint_every=ckpt.seconds, checkpoint_exit=exit_code)
    if checkpoints:
        out["append_output"] = True
    return out
