"""The venvs that outside tools which drive wulf run from (Snakemake, Dask-jobqueue...): one a tool, at the
versions pinned in tests/data/NAME/requirements.txt (their own dependencies clash with wulf's test pins),
made once under .venv/NAME-DIGEST from PyPI. ``./dev test`` makes them all before the tests start
(``python tests/toolenv.py``), so that no test downloads anything; a test run alone makes its own when it
is missing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def names() -> list[str]:
    """Every tool that has pins."""
    return sorted(p.parent.name for p in DATA.glob("*/requirements.txt"))


def ensure(name: str) -> Path:
    """The bin directory of tool ``name``'s venv, made if it is not there yet for these pins."""
    requirements = DATA / name / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = ROOT / ".venv" / f"{name}-{digest}"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        p = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "-r", str(requirements)], capture_output=True, text=True, timeout=1200)
        if p.returncode != 0:
            raise RuntimeError(f"pip could not install {name}'s pins from PyPI:\n{p.stderr[-3000:]}")
        stamp.touch()
    return venv / "bin"


if __name__ == "__main__":
    for tool in sys.argv[1:] or names():
        print(f"{tool}: {ensure(tool)}")
