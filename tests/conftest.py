from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from users import Users, make_users, remove, shared_dir


@pytest.fixture(scope="session")
def users() -> Iterator[Users]:
    """Real users and groups (see tests/users.py); the tests that need them need root (skipped without,
    except in CI)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the tests with real users need root")
        pytest.skip("the tests with real users need root")
    made = make_users()
    try:
        yield made
    finally:
        remove(made.all(), [made.admins, made.extra])


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory every user may enter."""
    path = shared_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
