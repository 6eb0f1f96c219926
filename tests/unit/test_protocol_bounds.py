"""What a client may send is checked where it arrives: no NUL, valid environment names, UTF-8 text,
finite numbers within bounds, bounded lists (issue 10, security 2, 5 and 6)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from wulf.errors import UsageError
from wulf.policy.limits import RunLimit
from wulf.protocol import (
    MAX_IDS,
    MAX_SUBMIT_JOBS,
    IdsRequest,
    InteractiveRequest,
    QueueRequest,
    Start,
    StartJob,
    SubmitRequest,
    TokenRequest,
    WaitRequest,
)
from wulf.server.daemon import start_messages
from wulf.server.mail import check_domain, digest_message
from wulf.server.views import program_of


def _submit(job: dict[str, Any] | None = None, **request: Any) -> SubmitRequest:
    """A submission as the server parses it: from JSON text (so NaN and lone surrogates arrive)."""
    body = {"jobs": [{"command": "true", "cwd": "/tmp", **(job or {})}], **request}
    return SubmitRequest.model_validate(json.loads(json.dumps(body)))


def _refused(job: dict[str, Any] | None = None, **request: Any) -> str:
    with pytest.raises(ValidationError) as e:
        _submit(job, **request)
    return str(e.value)


@pytest.mark.parametrize("field", ["command", "script", "cwd", "output", "name", "queue", "constraint"])
def test_a_nul_byte_in_any_string_of_a_job_is_refused(field: str) -> None:
    value = "/tmp/a\x00b" if field in ("cwd", "output") else "a\x00b"
    assert "NUL" in _refused({field: value})


def test_a_nul_byte_in_the_environment_is_refused() -> None:
    assert "NUL" in _refused(env={"HOME": "/root\x00x"})
    assert "NUL" in _refused(env={"A\x00B": "x"})


@pytest.mark.parametrize("name", ["", "A=B", "=", "X\x00"])
def test_bad_environment_names_are_refused(name: str) -> None:
    _refused(env={name: "x"})


def test_environment_names_real_systems_export_are_kept() -> None:
    env = {"BASH_FUNC_module%%": "() { eval $(/usr/bin/modulecmd bash $*) }", "PATH": "/bin", "my.var-1": "x"}
    assert _submit(env=env).env == env


@pytest.mark.parametrize("field", ["command", "script", "cwd", "name", "output"])
def test_text_that_is_not_utf8_is_refused(field: str) -> None:
    # what Python makes of undecodable bytes (a cwd or argument with \xff): a lone surrogate
    value = "/tmp/x\udcff" if field in ("cwd", "output") else "echo \udcff"
    assert "UTF-8" in _refused({field: value})
    assert "UTF-8" in _refused(env={"X": "\udcff"})


@pytest.mark.parametrize("field", ["cpu", "mem_mb", "time_limit", "cputime_limit", "mem_limit_mb"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -1.0, 0.0])
def test_numbers_must_be_finite_and_sane(field: str, value: float) -> None:
    _refused({field: value})


def test_sane_numbers_are_kept() -> None:
    job = _submit({"cpu": 64, "mem_mb": 2e6, "time_limit": 30 * 86400, "cputime_limit": 3600,
                   "mem_limit_mb": 1e6}).jobs[0]
    assert (job.cpu, job.mem_mb, job.time_limit, job.mem_limit_mb) == (64, 2e6, 30 * 86400, 1e6)


def test_a_command_longer_than_the_kernel_takes_is_refused() -> None:
    assert _submit({"command": "x" * 100_000}).jobs[0].command
    assert "128 KiB" in _refused({"command": "x" * 200_000})


def test_lists_are_bounded() -> None:
    with pytest.raises(ValidationError):
        IdsRequest(ids=list(range(1, MAX_IDS + 2)))
    with pytest.raises(ValidationError):
        WaitRequest(ids=list(range(1, MAX_IDS + 2)))
    jobs = [{"command": "true", "cwd": "/tmp"}] * (MAX_SUBMIT_JOBS + 1)
    with pytest.raises(ValidationError):
        SubmitRequest.model_validate({"jobs": jobs})
    assert len(IdsRequest(ids=list(range(1, MAX_IDS + 1))).ids) == MAX_IDS


def test_other_requests_are_checked_too() -> None:
    for bad in ({"queue": "q", "priority": 10**30}, {"queue": "q", "mail": "a\x00@b"}, {"queue": "q\udcff"}):
        with pytest.raises(ValidationError):
            QueueRequest.model_validate(bad)
    with pytest.raises(ValidationError):
        TokenRequest.model_validate(json.loads('{"days": NaN}'))
    with pytest.raises(ValidationError):
        WaitRequest.model_validate(json.loads('{"timeout": NaN}'))
    with pytest.raises(ValidationError):
        InteractiveRequest.model_validate({"job": {"command": "sh", "cwd": "/tmp"}, "env": {"A=B": "x"}})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_run_limits_refuse_what_is_not_a_finite_number(value: float) -> None:
    # NaN passes both `asked <= 0` and `asked > maximum`: it must not reach an agent as "no limit"
    limit = RunLimit("time", None, 3600.0)
    with pytest.raises(UsageError):
        limit.resolve(value)
    with pytest.raises(UsageError):
        RunLimit("time").resolve(value)


# ---------------------------------------------------------------- what the server sends: bounded too


def _start(job_id: int, script_mb: float) -> StartJob:
    return StartJob(id=job_id, name="big", user="alice", uid=1000, queue="default", command="big.sh",
                    script="#" * int(script_mb * 1024 * 1024), cwd="/tmp", env={"PATH": "/bin"}, output="",
                    keep_script=False, cpu=1.0, mem_mb=32.0)


def test_starts_for_a_node_go_in_messages_an_agent_takes() -> None:
    starts = [_start(i, 6) for i in range(1, 13)]  # 72 MB: more than an agent takes in one message
    messages = list(start_messages(starts))
    assert len(messages) > 1
    assert all(len(m.encode()) < 32 * 1024 * 1024 for m in messages)
    got = [s for m in messages for s in Start.model_validate_json(m).jobs]
    assert got == starts
    assert [Start.model_validate_json(m) for m in start_messages(starts[:2])] == [Start(jobs=starts[:2])]


def test_mail_goes_only_to_the_sites_domains() -> None:
    allowed = ["example.org", "lab.test."]
    for addr in ("a@example.org", "a@cs.example.org", "a@LAB.test", "alice"):
        assert check_domain(addr, allowed) == addr
    for addr in ("a@evil.test", "a@notexample.org", "a@example.org.evil.test"):
        with pytest.raises(UsageError, match="allowed_domains"):
            check_domain(addr, allowed)
    assert check_domain("a@anywhere.test", []) == "a@anywhere.test"


def test_jobs_ending_together_make_one_digest() -> None:
    jobs = [{"id": i, "state": "done" if i % 3 else "failed", "exit_code": 0 if i % 3 else 1, "name": f"j{i}",
             "node": "n1"} for i in range(1, 1201)]
    msg = digest_message(jobs, "alice@example.org", "wulf@test", "master")
    assert msg["Subject"] == "wulf: 1200 jobs ended (800 done, 400 failed)"
    text = msg.get_content()
    assert "\n1 done on n1 j1\n" in text and "\n3 failed (exit 1) on n1 j3\n" in text
    assert "and 200 more" in text and "\n1001 " not in text
    one = digest_message(jobs[:1], "alice@example.org", "wulf@test", "master")
    assert one["Subject"] == "wulf: job 1 (j1) done on n1"


def test_others_see_only_the_program_of_a_command_line() -> None:
    assert program_of("/usr/bin/python3 train.py --token=secret") == "python3"
    assert program_of("[kworker/0:1]") == "[kworker/0:1]"
    assert program_of("") == ""
