"""wulf doctor: is this machine set up right? One line per check, and what to do about a failure.

Each check is a small function of the configuration that returns a :class:`Check`; a check that does
not apply to this machine (no cluster key on a machine that only runs commands) says so and is skipped.
The exit status is 1 when any check failed, else 0.
"""

from __future__ import annotations

import argparse
import os
import stat
import time
from dataclasses import asdict, dataclass

from wulf.cli.common import ArgParser, print_json
from wulf.config import Config, load_config, server_url
from wulf.errors import ConfigError, ServerUnreachable, Unauthenticated, WulfError

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"

DOCTOR_HELP = """\
Checks this machine's part in the cluster and explains each finding in one line: the configuration
parses; the server is reachable and its certificate trusted; the cluster key is present and private;
this machine's clock agrees with the server's within the credential lifetime ([auth] ttl); cgroups are
usable; the scratch directory exists with the sticky bit; the local agent answers on its socket. A check
that does not apply here is skipped. Exit status 1 if any check failed.
"""


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, FAIL, warn (works, less well), skip (does not apply here)
    message: str


def doctor_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("doctor", help="check this machine's set-up, one line per check", description=DOCTOR_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


def check_config(path: str | None) -> tuple[Check, Config | None]:
    try:
        config = load_config(path)
    except ConfigError as e:
        return Check("config", FAIL, e.message), None
    said = f"{config.path} parses" if config.path else "no file: the defaults are in effect"
    return Check("config", OK, said), config


def check_server(config: Config) -> tuple[Check, dict[str, str]]:
    from wulf.client import Client

    url = server_url(config)
    client = Client(url, timeout=10)
    how = ("Unix socket" if url.startswith("unix:") else
           f"TLS, certificate trusted ({config.tls.ca or 'the system CAs'})" if url.startswith("https:")
           else "plain HTTP")
    try:
        who = client.whoami()
        known = f"; it knows you as {who.get('user')}"
    except Unauthenticated as e:
        known = f"; but it does not know you: {e.message}"
    except ServerUnreachable as e:
        return Check("server", FAIL, e.message), {}
    except WulfError as e:  # a certificate that does not verify, a server that does not speak wulf
        return Check("server", FAIL, e.message), {}
    finally:
        client.close()
    return Check("server", OK, f"{url} answers ({how}){known}"), client.headers


def check_key(config: Config) -> Check:
    path = config.key_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if config.auth.key_file:
            return Check("key", FAIL, f"{path} ([auth] key_file) is missing: copy it from the server (root only)")
        return Check("key", SKIP, f"no cluster key at {path} (only the server and the nodes' agents need one)")
    except PermissionError:
        return Check("key", SKIP, f"cannot look at {path} as this user (run wulf doctor as root)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check("key", FAIL, f"{path} is readable by others (mode {mode:04o}): chmod 600 {path}")
    if st.st_uid not in (0, os.geteuid()):
        return Check("key", FAIL, f"{path} belongs to uid {st.st_uid}: chown root {path}")
    return Check("key", OK, f"{path} present and private (mode {mode:04o})")


def check_clock(config: Config, headers: dict[str, str], asked: float) -> Check:
    from email.utils import parsedate_to_datetime

    date = headers.get("date")
    if not date:
        return Check("clock", SKIP, "the server's time is not known (it did not answer)")
    try:
        theirs = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("clock", SKIP, f"the server sent a date wulf cannot read ({date[:40]!r})")
    skew = theirs - asked  # the Date header is whole seconds: up to 1 s of this is rounding
    if abs(skew) > config.auth.ttl / 2:
        status = FAIL if abs(skew) > config.auth.ttl else WARN
        return Check("clock", status, f"this machine's clock is {abs(skew):.0f}s {'behind' if skew > 0 else 'ahead of'}"
                                      f" the server's; credentials last {config.auth.ttl:g}s ([auth] ttl): run NTP "
                                      f"(chrony, systemd-timesyncd) on every machine")
    return Check("clock", OK, f"within {max(abs(skew), 1):.0f}s of the server's (credentials last {config.auth.ttl:g}s)")


def check_cgroups(config: Config) -> Check:
    if config.agent.cgroups == "off":
        return Check("cgroups", SKIP, "[agent] cgroups = \"off\": jobs are measured from their processes")
    from wulf.agent.cgroups import detect

    layout = detect()
    if layout is None:
        return Check("cgroups", WARN, "no usable cgroups (v2 with the memory controller, or v1 memory): an agent "
                                      "here measures jobs from their processes and limits them with rlimits")
    point = layout.memory.point
    if os.geteuid() == 0 and not os.access(point, os.W_OK):
        return Check("cgroups", WARN, f"cgroups v{layout.version} at {point} are read-only here (a container?): "
                                      "an agent here limits jobs with rlimits")
    return Check("cgroups", OK, f"cgroups v{layout.version} (memory at {point}): each job gets one")


def check_scratch(config: Config) -> Check:
    path = config.agent.scratch
    try:
        st = os.stat(path)
    except OSError as e:
        return Check("scratch", FAIL, f"{path} ([agent] scratch): {e.strerror}; make it: mkdir -m 1777 {path}")
    if not stat.S_ISDIR(st.st_mode):
        return Check("scratch", FAIL, f"{path} ([agent] scratch) is not a directory")
    if not st.st_mode & stat.S_ISVTX:
        return Check("scratch", FAIL, f"{path} has no sticky bit: any user could remove others' files there: "
                                      f"chmod +t {path}")
    return Check("scratch", OK, f"{path} exists, sticky (mode {stat.S_IMODE(st.st_mode):04o})")


def check_agent_socket(config: Config) -> Check:
    from wulf.auth.digest import request_digest
    from wulf.client import fetch_credential

    path = os.environ.get("WULF_AGENT_SOCKET", config.auth.agent_socket)
    if not path:
        return Check("agent", SKIP, "no agent socket ([auth] agent_socket = \"\")")
    try:
        fetch_credential(path, request_digest("GET", "/api/v1/whoami", b""), timeout=5)
    except OSError as e:
        needed = not server_url(config).startswith("unix:") and not os.environ.get("WULF_TOKEN")
        if needed:
            return Check("agent", FAIL, f"no agent answers on {path} ({e.strerror or e}): the commands here cannot "
                                        "prove who runs them to the server (start `wulf agent`, or use a token)")
        return Check("agent", SKIP, f"no agent on {path} ({e.strerror or e}); the commands here use the server's "
                                    "socket or a token")
    except Unauthenticated as e:
        return Check("agent", FAIL, e.message)
    return Check("agent", OK, f"the agent answers on {path}")


def run_checks(path: str | None) -> list[Check]:
    first, config = check_config(path)
    if config is None:
        return [first]
    if path:  # the commands' own look-ups (agent socket, CA) read the same file
        os.environ["WULF_CONFIG"] = path
    asked = time.time()
    server, headers = check_server(config)
    asked = (asked + time.time()) / 2
    return [first, server, check_key(config), check_clock(config, headers, asked), check_cgroups(config),
            check_scratch(config), check_agent_socket(config)]


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args.config)
    if args.json:
        print_json({"checks": [asdict(c) for c in checks], "ok": all(c.status != FAIL for c in checks)})
    else:
        for c in checks:
            print(f"{c.status:<4}  {c.name:<8} {c.message}")
    return 1 if any(c.status == FAIL for c in checks) else 0
