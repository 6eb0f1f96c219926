from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import pgserver
from pgserver import PgServer
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


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A private PostgreSQL for this test run (tests/pgserver.py); it needs root (to run it as a throwaway
    user) and Debian's postgresql (.ci/run installs it): skipped without them, except in CI."""
    why = "the PostgreSQL tests need root" if os.geteuid() != 0 else \
        "the PostgreSQL tests need postgresql installed" if pgserver.bindir() is None else ""
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    server, owner = pgserver.start()
    try:
        yield server
    finally:
        pgserver.finish(server, owner)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store test keeps its store: an SQLite file, or a new database of the private PostgreSQL
    (the store tests run against both backends)."""
    if request.param == "sqlite":
        return str(tmp_path / "wulf.db")
    server: PgServer = request.getfixturevalue("pg")
    return server.new_database()

