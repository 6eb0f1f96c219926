"""The wheel builds (`python -m build`), twice the same, and installs in a fresh virtual environment
with every command, the manual pages under share/man and the example configuration."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WEB_FILES = {"index.html", "wulf.js", "wulf.css"}


def _build(out: Path) -> Path:
    p = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and "Could not find a version" in p.stdout + p.stderr:
        pytest.skip("the build backend cannot be installed here (no package index)")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    [wheel] = out.glob("wulf-*.whl")
    return wheel


def test_the_wheel_builds_reproducibly_and_installs(tmp_path: Path) -> None:
    first = _build(tmp_path / "a")
    second = _build(tmp_path / "b")
    digest = [hashlib.sha256(w.read_bytes()).hexdigest() for w in (first, second)]
    assert digest[0] == digest[1], "two builds of the same tree differ"
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    # the commands' own code needs nothing beyond the standard library: no dependencies for this check
    p = subprocess.run([str(env / "bin" / "pip"), "install", "-q", "--no-deps", str(first)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(env / "bin" / "qr"), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "usage: qr" in p.stdout and "xamples" in p.stdout, p.stderr
    for page in ("man1/qr.1", "man1/wulf.1", "man1/jstat.1", "man5/wulf.toml.5"):
        assert (env / "share" / "man" / page).exists(), page
    p = subprocess.run([str(env / "bin" / "wulf"), "man", "wulf.toml"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "purge_scratch_hours" in p.stdout, p.stderr
    [web] = env.glob("lib/python*/site-packages/wulf/server/web")  # the web interface's page, script and style
    assert {f.name for f in web.iterdir()} >= WEB_FILES


def test_the_sdist_builds_reproducibly(tmp_path: Path) -> None:
    builds = []
    for name in ("a", "b"):
        p = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path / name), str(REPO)],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0 and "Could not find a version" in p.stdout + p.stderr:
            pytest.skip("the build backend cannot be installed here (no package index)")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        [sdist] = (tmp_path / name).glob("wulf-*.tar.gz")
        with tarfile.open(sdist) as tar:
            assert {Path(n).name for n in tar.getnames() if "/src/wulf/server/web/" in n} >= WEB_FILES
        builds.append(hashlib.sha256(sdist.read_bytes()).hexdigest())
    assert builds[0] == builds[1], "two source distributions of the same tree differ"
