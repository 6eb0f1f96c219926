"""What the daemons import (issue 16: idle daemons' memory). Each module a daemon imports stays resident
for its whole life: psycopg and libpq (9 MB) only with a PostgreSQL store, cryptography (8 MB) only for
`wulf init`, the web framework only in the server, the simulator never. Checked in a fresh interpreter
that imports what `wulf agent` and `wulf server` import, as far as their event loop."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

#: never in either daemon: the simulator and its plotting, the PostgreSQL driver (with SQLite), the CA's tools
NEITHER = ["wulf.sim", "matplotlib", "numpy", "psycopg", "wulf.store.postgres", "cryptography", "wulf.auth.pki"]


def _loaded(code: str, watch: list[str]) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WULF_")}
    code = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] if m.split('.')[0] != 'wulf' else m "\
           f"for m in sys.modules}} & set({watch!r})))\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert p.returncode == 0, p.stderr
    return list(ast.literal_eval(p.stdout))


def test_the_agent_imports_no_server_side() -> None:
    watch = [*NEITHER, "fastapi", "starlette", "uvicorn", "prometheus_client", "sqlite3", "wulf.server",
             "wulf.store", "wulf.server.main", "wulf.store.sqlite"]
    code = "import wulf.cli.wulf\nimport wulf.agent.main"
    assert _loaded(code, watch) == []


def test_the_server_with_sqlite_imports_neither_psycopg_nor_the_simulator(tmp_path: Path) -> None:
    code = (f"import wulf.cli.wulf\nimport wulf.server.main\nfrom wulf.store import open_store\n"
            f"open_store({str(tmp_path / 'jobs.db')!r}).close()")
    assert _loaded(code, [*NEITHER, "wulf.agent.main"]) == []
