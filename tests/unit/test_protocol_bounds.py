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
    SubmitRequest,
    TokenRequest,
    WaitRequest,
)


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
