"""The venv Snakemake and its Slurm executor plugin run from, at the versions pinned in
tests/data/snakemake/requirements.txt (their own dependencies clash with wulf's test pins), made once
under .venv/ from PyPI. ``./dev test`` makes it before the tests start (``python tests/snakemake_env.py``),
so that no test downloads anything; a test run alone makes it when it is missing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "tests" / "data" / "snakemake" / "requirements.txt"


def ensure() -> Path:
    """The venv's bin directory, made if it is not there yet for these pins."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = ROOT / ".venv" / f"snakemake-{digest}"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        p = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "-r", str(REQUIREMENTS)], capture_output=True, text=True, timeout=1200)
        if p.returncode != 0:
            raise RuntimeError(f"pip could not install Snakemake from PyPI:\n{p.stderr[-3000:]}")
        stamp.touch()
    return venv / "bin"


if __name__ == "__main__":
    print(f"snakemake: {ensure()}")
