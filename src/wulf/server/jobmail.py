"""Mail about one job, as its owner asked at submission (``qr --mail-type ... --mail-user ADDR``).

Where it goes is settled at submission (:func:`resolve`): the address given, else the submitting user
at ``[mail] domain`` (their bare name without one), checked like a queue's (one address, within
``[mail] allowed_domains``). When it goes is the state machine's (no I/O here): :func:`on_start`
(BEGIN), :func:`on_end` (END, FAIL; an end hook of :class:`~wulf.server.state.ServerState`) and
:func:`on_requeue` (REQUEUE, for the path that puts a job back in line to run again) return
:class:`~wulf.server.instructions.Mail` instructions, which the shell sends one by one (a queue's mail,
``kind`` "queue", is the one sent as a digest). The messages (:func:`message`) are pure too. The end
mail says how the job ended and what it used against what it asked, as Slurm's ``smail``/``seff`` do.

Arrays (issue 11 §2) mail once for the whole array unless ``ARRAY_TASKS``: :func:`on_end` is the one
place that decides whether an ending job mails; a task of an array without ARRAY_TASKS is to be left
out there, and the array's own end mailed when its last task ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from wulf.config import Config
from wulf.errors import UsageError
from wulf.model.job import Job, JobState, Origin
from wulf.model.mailtypes import mail_types, parse_mail_types
from wulf.server import mail
from wulf.server.instructions import Mail


def resolve(mail_type: str, mail_user: str, user: str, config: Config) -> tuple[str, str]:
    """(canonical mail types, address) of a submission; ("", "") for no mail. An address without
    types mails at the end (END). UsageError for a bad type or an address this site does not mail."""
    types = parse_mail_types(mail_type) if mail_type.strip() else ("END" if mail_user.strip() else "")
    if not types:
        return "", ""
    to = mail_user.strip() or default_address(user, config.mail.domain)
    try:
        to = mail.check_domain(mail.validate_address(to), config.mail.allowed_domains)
    except UsageError as e:
        raise UsageError(f"--mail-user: {e.message}") from None
    return types, to


def default_address(user: str, domain: str) -> str:
    """The submitting user's address: ``user@domain``, or the bare user name without a domain."""
    domain = domain.strip().strip(".")
    return f"{user}@{domain}" if domain else user


def _wants(job: Job, kind: str) -> bool:
    return job.origin is Origin.BATCH and bool(job.mail_user) and kind in mail_types(job.mail_type)


def on_start(job: Job) -> list[Mail]:
    """BEGIN: the job has started on its node."""
    return [Mail(job.mail_user, job, "begin")] if _wants(job, "BEGIN") else []


def on_end(job: Job) -> list[Mail]:
    """END or FAIL: one mail at the end (a failure's when FAIL is asked for and it failed)."""
    if job.state is JobState.FAILED and _wants(job, "FAIL"):
        return [Mail(job.mail_user, job, "end")]
    return [Mail(job.mail_user, job, "end")] if _wants(job, "END") else []


def on_requeue(job: Job) -> list[Mail]:
    """REQUEUE: the job went back in line to run again (retries, a lost node: see issue 11 §4)."""
    return [Mail(job.mail_user, job, "requeue")] if _wants(job, "REQUEUE") else []


# ---------------------------------------------------------------- the messages (pure)


def message(kind: str, job: Mapping[str, Any], to: str, sender: str, server_name: str,
            tz: tzinfo | None = None) -> EmailMessage:
    """The mail of ``kind`` ("begin", "end", "requeue") about ``job`` (as Job.public gives it)."""
    host = mail._one_line(server_name) or "localhost"
    msg = EmailMessage()
    msg["Subject"] = subject(kind, job)
    msg["From"] = mail._one_line(sender)
    msg["To"] = mail._one_line(to)
    msg["Date"] = format_datetime(datetime.now().astimezone() if tz is None else datetime.now(tz))
    stamp = int(float(job.get("ended") or job.get("started") or job.get("submitted") or 0))
    msg["Message-ID"] = f"<wulf-job-{job.get('id')}.{kind}.{stamp}@{re.sub(r'[^A-Za-z0-9.-]', '', host)}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg["X-Wulf-Job"] = str(job.get("id"))
    text = mail.body(job, host, tz)
    if kind == "end":
        head, _, tail = text.rpartition("\n-- ")
        text = head + "\n" + "\n".join(efficiency(job)) + "\n\n-- " + tail
    msg.set_content(text)
    return msg


def subject(kind: str, job: Mapping[str, Any]) -> str:
    """``wulf: job 42 (sim) began on node3``, ``... done on node3`` (as a queue's mail), ``... requeued``."""
    if kind == "end":
        return mail.subject(job)
    name = mail._one_line(str(job.get("name") or ""))
    named = f" ({name})" if name else ""
    if kind == "begin":
        node = mail._one_line(str(job.get("node") or ""))
        return f"wulf: job {job.get('id')}{named} began" + (f" on {node}" if node else "")
    return f"wulf: job {job.get('id')}{named} requeued"


def efficiency(job: Mapping[str, Any]) -> list[str]:
    """What the job used against what it asked (Slurm's seff): cpu efficiency, peak memory, run time."""
    lines = ["Used against asked:"]
    started, ended = job.get("started"), job.get("ended")
    elapsed = max(0.0, float(ended) - float(started)) if started is not None and ended is not None else None
    cpus = float(job.get("cpu_req") or 0.0)
    cpu_time = job.get("cpu_time")
    if elapsed and cpus and cpu_time is not None:
        core = elapsed * cpus
        lines.append(f"  cpu efficiency: {100.0 * float(cpu_time) / core:.1f}% ({mail._duration(cpu_time)} of "
                     f"{mail._duration(core)} core-walltime: {cpus:g} cpu x {mail._duration(elapsed)})")
    else:
        lines.append("  cpu efficiency: not known (it did not run, or its use was not measured)")
    asked = float(job.get("mem_req_mb") or 0.0)
    peak = job.get("peak_mem_mb")
    if peak is not None and asked:
        lines.append(f"  memory:         {mail._megabytes(float(peak))} at its peak, of {mail._megabytes(asked)} "
                     f"asked ({100.0 * float(peak) / asked:.1f}%)")
    if job.get("mem_limit_mb"):
        lines.append(f"  memory limit:   {mail._megabytes(float(job['mem_limit_mb']))}")
    limit = job.get("time_limit")
    if elapsed is not None and limit:
        lines.append(f"  run time:       {mail._duration(elapsed)} of a {mail._duration(float(limit))} limit "
                     f"({100.0 * elapsed / float(limit):.1f}%)")
    return lines

