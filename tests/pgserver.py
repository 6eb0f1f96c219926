"""A private PostgreSQL for the tests: Debian's server binaries, a cluster in a temporary directory owned
by a throwaway user (initdb refuses root), listening on a free loopback port and on a Unix socket in that
directory; stopped and removed at the end.

Each test that wants a store gets a database of its own (:meth:`PgServer.new_database`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from users import User, make_user, remove


def bindir() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian keeps them out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One running PostgreSQL. ``fsync`` off unless asked: the tests need no power-loss safety, and a
    loaded machine gives CREATE DATABASE and commits back quickly."""

    def __init__(self, owner: User, fsync: bool = False) -> None:
        programs = bindir()
        if programs is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = programs
        self.owner = owner
        self.dir = Path(tempfile.mkdtemp(prefix="wulf-pg-", dir="/tmp"))
        os.chown(self.dir, owner.uid, owner.gid)
        self.data = self.dir / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._as_owner(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--locale=C.UTF-8", "--no-sync"])
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                f"-c fsync={'on' if fsync else 'off'} -c max_connections=200 -c shared_buffers=32MB")
        self._as_owner(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w",
                        "-t", "60", "start"])

    def _as_owner(self, argv: list[str]) -> None:
        out = subprocess.run([str(self.bin / argv[0]), *argv[1:]], user=self.owner.uid, group=self.owner.gid,
                             cwd=self.dir, capture_output=True, text=True, timeout=120)
        if out.returncode:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {out.stderr}{out.stdout}{log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._as_owner(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start(fsync: bool = False) -> tuple[PgServer, User]:
    """A private server and the throwaway user that owns it (remove it with :func:`finish`)."""
    owner = make_user("pg")
    try:
        server = PgServer(owner, fsync)
    except BaseException:
        remove([owner], [owner.name])
        raise
    return server, owner


def finish(server: PgServer, owner: User) -> None:
    try:
        server.stop()
    finally:
        remove([owner], [owner.name])



def scalar(where: str, sql: str, *params: object) -> object:
    """One value of a query (written with ``?``) run straight on a store's database, either backend."""
    if where.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(where, autocommit=True) as conn:
            row = conn.execute(sql.replace("?", "%s"), params).fetchone()
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(where)) as db:
            row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]
