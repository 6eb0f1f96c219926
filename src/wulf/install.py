"""What `wulf install server|node|client` writes: the configuration skeleton, systemd units, tmpfiles.

Pure: :func:`plan` says which files hold what for a role; :mod:`wulf.cli.install` writes them (under
``--root`` in tests), records what it wrote in a manifest, and `wulf uninstall` removes exactly that.

The units' hardening is what the daemons tolerate. The server keeps its state in /var/lib/wulf and its
socket there, so the rest of the system is read-only to it and its /tmp private. The agent runs users'
jobs: they share /tmp (scratch) and write in homes, and they outlive a restart of the agent, so its unit
only makes /usr, /boot and /etc read-only, kills only the agent itself when it stops (``KillMode=process``)
and delegates cgroups to it.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("server", "node", "client")
STATE = "/var/lib/wulf"
ETC = "/etc/wulf"
UNITS = "/etc/systemd/system"


@dataclass(frozen=True)
class File:
    path: str  # absolute, as on the installed machine
    text: str
    mode: int = 0o644
    is_config: bool = False  # kept when it is there already, and by `wulf uninstall` once changed


def server_unit(exe: str) -> str:
    return f"""[Unit]
Description=wulf job server (queue, scheduler, HTTP API)
Documentation=man:wulf(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
Environment=WULF_CONFIG={ETC}/wulf.toml
ExecStart={exe} server
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
LimitNOFILE=65536
StateDirectory=wulf
StateDirectoryMode=0755
LogsDirectory=wulf
ProtectSystem=strict
ReadWritePaths=-/run/wulf
PrivateTmp=true
ProtectHome=true
NoNewPrivileges=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true

[Install]
WantedBy=multi-user.target
"""


def agent_unit(exe: str) -> str:
    return f"""[Unit]
Description=wulf node agent (reports this machine, runs its jobs)
Documentation=man:wulf(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
Environment=WULF_CONFIG={ETC}/wulf.toml
ExecStart={exe} agent
Restart=on-failure
RestartSec=5
LimitNOFILE=65536
# jobs outlive a restart of the agent, run in cgroups of their own, and share /tmp with their users
KillMode=process
Delegate=yes
ProtectSystem=full
ProtectKernelModules=true

[Install]
WantedBy=multi-user.target
"""


def purge_units(exe: str, hours: float) -> tuple[str, str]:
    service = f"""[Unit]
Description=wulf: remove old leftovers of jobs from scratch
Documentation=man:wulf(1)

[Service]
Type=oneshot
Environment=WULF_CONFIG={ETC}/wulf.toml
ExecStart={exe} purge-scratch --hours {hours:g}
Nice=10
IOSchedulingClass=idle
"""
    timer = """[Unit]
Description=wulf: purge scratch every hour

[Timer]
OnCalendar=hourly
RandomizedDelaySec=10min
Persistent=true

[Install]
WantedBy=timers.target
"""
    return service, timer


TMPFILES = "# the agent's socket, where it vouches for this machine's users\nd /run/wulf 0755 root root -\n"


def config_skeleton(role: str, server: str) -> str:
    lines = [f"# wulf configuration written by `wulf install {role}`: the same file on every node.",
             "# Every key is documented in `man 5 wulf.toml`; `wulf config` prints what is in effect.", ""]
    if role == "server":
        lines += ["[server]", f'state_dir = "{STATE}"', 'listen = ":7878"', ""]
    lines += ["[client]", f'server = "{server}"', "", "[auth]", f'key_file = "{ETC}/cluster.key"', ""]
    if role != "client":
        lines += ["[log]", 'format = "text"   # "json" for a log collector; to the journal (stderr)', ""]
    return "\n".join(lines)


def plan(role: str, exe: str, server: str, purge_hours: float = 72.0) -> list[File]:
    """The files of ``role`` (server: the server, node: an agent, client: commands only)."""
    files = [File(f"{ETC}/wulf.toml", config_skeleton(role, server), is_config=True)]
    if role == "server":
        files.append(File(f"{UNITS}/wulf-server.service", server_unit(exe)))
    if role == "node":
        service, timer = purge_units(exe, purge_hours)
        files += [File(f"{UNITS}/wulf-agent.service", agent_unit(exe)),
                  File(f"{UNITS}/wulf-purge-scratch.service", service),
                  File(f"{UNITS}/wulf-purge-scratch.timer", timer)]
    if role != "client":
        files.append(File("/etc/tmpfiles.d/wulf.conf", TMPFILES))
    return files


def next_steps(role: str, server: str) -> str:
    """What to do after the files are written (and what to copy to the other machines)."""
    if role == "server":
        return (f"next: wulf init --host $(hostname -f)   (key, CA and certificate in {ETC}; it says what to copy)\n"
                f"      systemctl daemon-reload && systemd-tmpfiles --create && systemctl enable --now wulf-server\n"
                f"then on every node: copy {ETC}/wulf.toml, {ETC}/ca.pem and {ETC}/cluster.key (root only) and run "
                f"`wulf install node`; on machines that only submit: {ETC}/wulf.toml and ca.pem, `wulf install client`")
    if role == "node":
        return (f"next: copy {ETC}/ca.pem and {ETC}/cluster.key (mode 600) from the server, then\n"
                "      systemctl daemon-reload && systemd-tmpfiles --create && "
                "systemctl enable --now wulf-agent wulf-purge-scratch.timer\n      wulf doctor")
    return f"next: copy {ETC}/ca.pem from the server; then `wulf doctor` and `jstat` (server {server})"
