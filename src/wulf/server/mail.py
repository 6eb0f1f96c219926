"""Mail when a job ends, for queues set with ``qset QUEUE --mail ADDR``.

:func:`completion_message` builds the message of one job and :func:`digest_message` that of several
that ended close together (pure); :func:`send` hands it to an SMTP server in a thread. A failure to send is a :class:`MailError` with a one-line message for the server's log: mail
must never disturb the daemon.
"""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from wulf.errors import ConfigError, UsageError, WulfError

DEFAULT_PORT = 25

_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


class MailError(WulfError):
    """A mail could not be sent (the server logs it and carries on)."""

    retryable = True


def validate_address(addr: str) -> str:
    """The address, stripped, if it looks like one: ``user@host.domain`` or a local ``user``.

    A bare user name is delivered by the SMTP server to that user on its own host. This is a simple
    check for obvious mistakes (spaces, several addresses, a missing part), not full RFC 5322.
    """
    text = addr.strip()
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, ""
    problem = None
    if not text:
        problem = "it is empty"
    elif len(text) > 254:
        problem = "it is longer than 254 characters"
    elif re.search(r"[\s,;<>()\[\]\\\"]", text):
        problem = "it has spaces, separators or brackets (one bare address only)"
    elif not _LOCAL_RE.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        problem = "the part before '@' is not a mailbox name"
    elif at and not _DOMAIN_RE.fullmatch(domain):
        problem = "the part after '@' is not a host name"
    if problem:
        raise UsageError(f"bad mail address {addr!r}: {problem}; give one address like user@example.org")
    return text


def check_domain(addr: str, allowed: Iterable[str]) -> str:
    """``addr`` if the site lets wulf mail it: a bare local user name, or an address in one of the
    ``allowed`` domains or their subdomains (none given: any). Raises UsageError otherwise."""
    domains = [d.strip().strip(".").lower() for d in allowed]
    domain = addr.rpartition("@")[2].lower() if "@" in addr else ""
    if not domains or not domain or any(domain == d or domain.endswith("." + d) for d in domains):
        return addr
    raise UsageError(f"wulf mails only addresses in {', '.join(domains)} (this site's [mail] allowed_domains), "
                     f"not {addr}")


#: most jobs a digest lists one by one (the rest are counted)
DIGEST_LINES = 1000


def digest_message(jobs: Sequence[Mapping[str, Any]], to: str, sender: str, server_name: str,
                   tz: tzinfo | None = None) -> EmailMessage:
    """One mail about several jobs (as :meth:`wulf.model.job.Job.public` gives them) that ended close
    together: a count by outcome, then a line a job."""
    if len(jobs) == 1:
        return completion_message(jobs[0], to, sender, server_name, tz)
    counts = Counter(str(j.get("state") or "ended") for j in jobs)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    msg = EmailMessage()
    msg["Subject"] = f"wulf: {len(jobs)} jobs ended ({summary})"
    msg["From"] = _one_line(sender)
    msg["To"] = _one_line(to)
    host = _one_line(server_name) or "localhost"
    msg["Date"] = format_datetime(datetime.now().astimezone() if tz is None else datetime.now(tz))
    first, last = jobs[0].get("id"), jobs[-1].get("id")
    msg["Message-ID"] = f"<wulf-jobs-{first}-{last}.{len(jobs)}@{re.sub(r'[^A-Za-z0-9.-]', '', host)}>"
    msg["Auto-Submitted"] = "auto-generated"
    lines = [f"{len(jobs)} jobs ended: {summary}.", ""]
    for j in jobs[:DIGEST_LINES]:
        name = _one_line(str(j.get("name") or j.get("command") or ""))[:60]
        where = f" on {_one_line(str(j['node']))}" if j.get("node") else ""
        lines.append(f"{j.get('id')} {outcome(j)}{where} {name}".rstrip())
    if len(jobs) > DIGEST_LINES:
        lines.append(f"... and {len(jobs) - DIGEST_LINES} more")
    lines += ["", f"-- wulf on {host}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def completion_message(
    job: Mapping[str, Any], to: str, sender: str, server_name: str, tz: tzinfo | None = None
) -> EmailMessage:
    """The mail that tells ``to`` that ``job`` (as :meth:`wulf.model.job.Job.public` gives it) ended.

    Times are shown in ``tz`` (the server's local zone when None) in ISO form.
    """
    msg = EmailMessage()
    msg["Subject"] = subject(job)
    msg["From"] = _one_line(sender)
    msg["To"] = _one_line(to)
    ended = job.get("ended")
    if ended is not None:
        msg["Date"] = format_datetime(_local(ended, tz))
    host = _one_line(server_name) or "localhost"
    domain = re.sub(r"[^A-Za-z0-9.-]", "", host)
    msg["Message-ID"] = f"<wulf-job-{job.get('id')}.{int(ended or 0)}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg["X-Wulf-Job"] = str(job.get("id"))
    msg.set_content(body(job, host, tz))
    return msg


def outcome(job: Mapping[str, Any]) -> str:
    """``done``, ``failed (exit 1)``, ``failed (SIGKILL)``, ``cancelled``, ..."""
    state = str(job.get("state") or "ended")
    if state != "failed":
        return state
    if job.get("signal"):
        return f"failed ({_signal_name(int(job['signal']))})"
    if job.get("exit_code") is not None:
        return f"failed (exit {job['exit_code']})"
    return "failed"


def subject(job: Mapping[str, Any]) -> str:
    """E.g. ``wulf: job 42 (sim) done on node3`` or ``wulf: job 43 failed (exit 1) on node3``."""
    name = _one_line(str(job.get("name") or ""))
    named = f" ({name})" if name else ""
    node = _one_line(str(job.get("node") or ""))
    where = f" on {node}" if node else ""
    return f"wulf: job {job.get('id')}{named} {outcome(job)}{where}"


def body(job: Mapping[str, Any], server_name: str, tz: tzinfo | None = None) -> str:
    """The plain-text summary of the job."""
    owner = f" of {job['user']}" if job.get("user") else ""
    queue = f" in queue {job['queue']}" if job.get("queue") else ""
    lines = [f"Job {job.get('id')}{owner}{queue}: {outcome(job)}.", ""]
    rows: list[tuple[str, Any]] = [
        ("name", job.get("name")),
        ("command", job.get("command")),
        ("directory", job.get("cwd")),
        ("node", job.get("node")),
        ("output", job.get("output")),
        ("exit code", job.get("exit_code")),
        ("signal", _signal_name(int(job["signal"])) if job.get("signal") else None),
        ("submitted", _when(job.get("submitted"), tz)),
        ("started", _when(job.get("started"), tz)),
        ("ended", _when(job.get("ended"), tz)),
        ("elapsed", _elapsed(job)),
        ("cpu time", _duration(job.get("cpu_time"))),
        ("peak memory", _megabytes(job.get("peak_mem_mb"))),
        ("reason", job.get("reason")),
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines += [
        f"{label + ':':<{width}}{_one_line(str(value))}" for label, value in rows if value not in (None, "")
    ]
    lines += ["", f"-- wulf on {server_name}"]
    return "\n".join(lines) + "\n"


def parse_smtp(smtp: str) -> tuple[str, int]:
    """``host:port`` (port 25 when left out; ``[::1]:25`` for IPv6) as (host, port)."""
    text = smtp.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^\s:\[\]]+)(?::(\d+))?", text)
    if match is None:
        raise ConfigError(f"mail smtp {smtp!r} is not host:port (e.g. localhost:25)")
    host = match[1] or match[3]
    port = int(match[2] or match[4] or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise ConfigError(f"mail smtp {smtp!r}: port must be 1..65535")
    return host, port


async def send(smtp: str, message: EmailMessage, timeout: float = 10.0) -> None:
    """Send ``message`` through the SMTP server ``smtp`` (``host:port``); :class:`MailError` on failure.

    ``timeout`` bounds each network operation. The blocking client runs in a worker thread.
    """
    host, port = parse_smtp(smtp)
    try:
        await asyncio.to_thread(_send_blocking, host, port, message, timeout)
    except (OSError, ValueError) as e:  # smtplib.SMTPException is an OSError
        raise MailError(f"cannot send mail to {message['To']} via {smtp}: {_reason(e)}") from e


def _send_blocking(host: str, port: int, message: EmailMessage, timeout: float) -> None:
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        client.send_message(message)


def _reason(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        reason = f"{error.smtp_code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
    elif isinstance(error, smtplib.SMTPRecipientsRefused):
        reason = "; ".join(
            f"{rcpt}: {code} {msg.decode('utf-8', 'replace')}"
            for rcpt, (code, msg) in error.recipients.items()
        )
    else:
        reason = str(error) or type(error).__name__
    return _one_line(reason)


def _one_line(text: str) -> str:
    return " ".join(_CONTROL_RE.sub(" ", text).split())


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _local(timestamp: float, tz: tzinfo | None) -> datetime:
    if tz is None:
        return datetime.fromtimestamp(timestamp).astimezone()
    return datetime.fromtimestamp(timestamp, tz)


def _when(timestamp: float | None, tz: tzinfo | None) -> str | None:
    if timestamp is None:
        return None
    return _local(timestamp, tz).isoformat(sep=" ", timespec="seconds")


def _elapsed(job: Mapping[str, Any]) -> str | None:
    started, ended = job.get("started"), job.get("ended")
    if started is None or ended is None:
        return None
    return _duration(max(0.0, ended - started))


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def _megabytes(mb: float | None) -> str | None:
    if mb is None:
        return None
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
