"""``qr --checkpoint criu``: why wulf refuses it here (issue 13 §2).

Dumping a job's whole process tree and restoring it elsewhere needs CRIU, and a kernel that CRIU
supports (``criu check`` passes). wulf's agents do not dump and restore yet, so qr refuses the option
always; the one line it prints says what this machine lacks first (CRIU, or a kernel CRIU supports),
so that people know whether the option could ever work on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

#: where criu is looked for besides PATH (Debian installs it in /usr/sbin)
SBIN = "/usr/sbin:/sbin"
#: seconds `criu check` may take
CHECK_TIMEOUT = 30.0


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def refusal() -> str:
    """The one line that says why ``--checkpoint criu`` is refused on this machine."""
    path = os.environ.get("PATH", os.defpath)
    criu = shutil.which("criu", path=f"{path}:{SBIN}" if path else SBIN)
    advice = "use --checkpoint SIG[@INTERVAL] (the job saves its own state and exits with its checkpoint code)"
    if criu is None:
        return f"--checkpoint criu: criu is not installed here (not in PATH nor {SBIN}); {advice}"
    try:
        done = subprocess.run([criu, "check"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=CHECK_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"--checkpoint criu: `{criu} check` could not run ({e}); {advice}"
    if done.returncode != 0:
        why = _first_line(done.stderr) or _first_line(done.stdout) or f"exit {done.returncode}"
        return f"--checkpoint criu: `criu check` fails here ({why}); {advice}"
    return (f"--checkpoint criu: `criu check` passes, but wulf's agents do not dump and restore jobs with CRIU yet; "
            f"{advice}")
