"""The Python API's pure parts: records from the server's JSON, submissions checked as qr checks them
(and accepted by the server's own model), and the lazy import that keeps the commands fast."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wulf
from wulf.api import records, spec
from wulf.api.client import refs, states
from wulf.errors import UsageError
from wulf.model.accounting import acct_row, summary_row
from wulf.model.job import Job as ServerJob
from wulf.model.job import JobState, Origin
from wulf.protocol import SubmitRequest
from wulf.server.nodes import Node as ServerNode
from wulf.server.queues import QueueSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "python-api.md"


def _server_job() -> ServerJob:
    return ServerJob(id=7, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.DONE, command="echo hi",
                     cwd="/tmp", name="hi", started=10.0, ended=12.0, exit_code=0, array_id=7, array_index=1)


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(("record", "shown", "left_out"), [
    (records.Job, _server_job().public(100.0), {"age"}),  # (how long ago: stale once read)
    (records.AccountingRecord, acct_row(_server_job()), set()),
    (records.UserSummary, summary_row("alice", 1, 3600.0, 5.0, 1, 7200.0), set()),
    (records.Node, ServerNode("n1").public(), set()),
    (records.Queue, {**QueueSettings("alice", "q").public(), "queued": 0, "running": 0, "window_open": True,
                     "reason": ""}, set()),
])
def test_records_have_every_field_the_server_shows(record: type, shown: dict[str, object], left_out: set[str]) -> None:
    """A field named otherwise than the server's key would always hold its default: none is."""
    assert _names(record) == set(shown) - left_out


def test_records_from_json_ignore_what_they_do_not_know_and_default_what_is_missing() -> None:
    job = records.Job.from_json({**_server_job().public(100.0), "from_a_newer_server": 1})
    assert (job.id, job.state, job.ok, job.finished, job.ref) == (7, JobState.DONE, True, True, "7[1]")
    old = records.Job.from_json({"id": 3, "user": "bob", "state": "queued"})  # an older server's
    assert (old.state, old.depend, old.retries, old.ok, old.finished, old.ref) == (JobState.QUEUED, "", 0, False, False, "3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.state = JobState.DONE  # type: ignore[misc]
    node = records.Node.from_json({"name": "n1", "state": "up", "features": ["gpu"]})
    assert node.features == ("gpu",)


def _spec(command: str | None = "echo hi", script: str | None = None, **options: object) -> dict[str, object]:
    opts = spec.Options(**options)  # type: ignore[arg-type]
    return spec.one(command, script, opts, spec.common(opts))


def test_a_submission_is_what_the_server_takes() -> None:
    body = _spec(cpu=2, mem="1.5G", array="1-10:3%2", after=[12, "13"], after_any=14, depend="afternotok:15",
                 retries=3, time_limit="1:30:00", cputime_limit=60, mem_limit="2G", nice=5, queue="q",
                 constraint="arch=x86_64,bigmem", mail_type="end,fail", cwd="/tmp")
    assert body == {"cwd": "/tmp", "queue": "q", "output": "", "keep_script": False, "cpu": 2.0, "mem_mb": 1536.0,
                    "constraint": "arch=x86_64,bigmem", "time_limit": 5400.0, "cputime_limit": 60.0,
                    "mem_limit_mb": 2048.0, "nice": 5, "array": "1-10:3%2",
                    "depend": "afternotok:15,afterok:12:13,afterany:14", "retries": 3, "mail_type": "END,FAIL",
                    "name": "echo", "command": "echo hi"}
    script = _spec(None, "#!/bin/sh\necho hi\n", name="s")
    assert (script["script"], script["command"], script["name"]) == ("#!/bin/sh\necho hi\n", "s", "s")
    SubmitRequest.model_validate({"jobs": [body, script], "env": spec.environment({"A": "1"})})


@pytest.mark.parametrize(("options", "says"), [
    ({"cpu": 0}, "cpu"),
    ({"cpu": float("nan")}, "cpu"),
    ({"mem": "lots"}, "not a size"),
    ({"mem": True}, "mem"),
    ({"array": "5-1"}, "array"),
    ({"after": "x"}, "not a job id"),
    ({"after": [1.5]}, "not a job id"),
    ({"depend": "before:1"}, "afterok"),
    ({"retries": -1}, "retries"),
    ({"retries": 1000}, "retries"),
    ({"time_limit": "soon"}, "time_limit"),
    ({"nice": 20}, "nice"),
    ({"mail_type": "SOMETIMES"}, "is not one of BEGIN"),
])
def test_bad_options_are_usage_errors(options: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        _spec(**options)


def test_a_command_or_a_script() -> None:
    for command, script in ((None, None), ("true", "#!/bin/sh\n"), ("  ", None), (None, "")):
        with pytest.raises(UsageError):
            _spec(command, script)
    with pytest.raises(TypeError):
        _spec(memory="1G")


def test_job_refs_and_states() -> None:
    assert refs(5) == [5]
    assert refs(["7", "7[3]", 8, " 9 "]) == [7, "7[3]", 8, 9]
    for bad in ([], [0], ["7[x]"], [True], [1.0]):
        with pytest.raises(UsageError):
            refs(bad)  # type: ignore[arg-type]
    assert states("done") == {JobState.DONE}
    assert states(["held", "queued"]) == {JobState.HELD, JobState.QUEUED}
    with pytest.raises(UsageError, match="not a job state"):
        states("sleeping")


def test_the_environment_is_this_processs_unless_given() -> None:
    assert spec.environment({"A": "1", "B\udcff": "x"}) == {"A": "1"}  # (not UTF-8: left out, as qr does)
    assert spec.environment(None)["PATH"] == os.environ["PATH"]


def test_the_api_is_imported_when_asked_for() -> None:
    code = ("import sys, wulf, wulf.client, wulf.cli.qr\n"
            "print('wulf.api' in sys.modules, 'dataclasses' in sys.modules)\n"
            "from wulf import Client, Job, NotFound\n"
            "print('wulf.api' in sys.modules, Client.__module__, NotFound.exit_code, 'asyncio' in sys.modules)\n"
            "from wulf import AsyncClient\n"
            "print(AsyncClient.__module__)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.splitlines() == ["False False", "True wulf.api.client 4 False", "wulf.api.aio"]
    with pytest.raises(AttributeError):
        _ = wulf.NoSuchThing  # type: ignore[attr-defined]
    assert set(wulf.__all__) - {"__version__"} == {n for n in wulf.__all__ if hasattr(wulf, n)} - {"__version__"}


def test_the_documented_examples_type_check(tmp_path: Path) -> None:
    """Every Python block of docs/python-api.md passes mypy --strict as a user's program would (the names
    they use exist, with the types they are used with): the page cannot drift from the API."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) >= 8
    lines = ["from __future__ import annotations", "import asyncio, datetime, sys",
             "from wulf import AsyncClient, Client, Forbidden, NotFound", ""]
    for i, block in enumerate(blocks):  # each in a function, with the names the page takes as given
        lines.append(f"def example{i}(wulf: Client, job_id: int, a: int, b: int, c: int, array: int) -> None:")
        lines += ["    " + line for line in block.splitlines()] + ["    pass", ""]
    program = tmp_path / "examples.py"
    program.write_text("\n".join(lines))
    p = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(program)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert (p.returncode, p.stdout) == (0, ""), program.read_text()


def test_an_output_directory_gets_the_default_name_in_it_as_with_qr(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    assert _spec(output="logs", cwd=str(tmp_path))["output"] == os.path.join("logs", "wulf-%j.out")
    assert _spec(output="logs/run-%j.txt", cwd=str(tmp_path))["output"] == "logs/run-%j.txt"
    assert _spec(output="new.out", cwd=str(tmp_path))["output"] == "new.out"
