"""wulf install server|node|client and wulf uninstall: write (and remove) what a machine of the cluster needs.

The files come from :func:`wulf.install.plan`. A manifest (/var/lib/wulf/install.json) records each file
written and its hash; `wulf uninstall` removes those still as written, and keeps a configuration file
someone changed since (it says so). Nothing else is touched: not the job database, not the key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from wulf import install
from wulf.cli.common import ArgParser
from wulf.config import Config
from wulf.errors import UsageError, WulfError

MANIFEST = f"{install.STATE}/install.json"


def install_parsers(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("install", help="write the configuration skeleton, systemd units and tmpfiles of a role",
                       description="As root: writes /etc/wulf/wulf.toml (unless there is one), the systemd units "
                                   "of the role (server: wulf-server.service; node: wulf-agent.service and the "
                                   "scratch purge timer), tmpfiles for /run/wulf, and says what to copy to the "
                                   "other machines. `wulf uninstall` removes what it wrote.")
    p.add_argument("role", choices=install.ROLES, help="server (the master), node (runs jobs) or client (commands)")
    p.add_argument("--server", metavar="URL", help="the server's URL for the commands (default: "
                   "https://THIS-HOST:7878 for a server; required for a node or client)")
    p.add_argument("--purge-hours", type=float, default=72.0, help="a node's purge timer: scratch files unused "
                   "this long go (default 72)")
    p.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: write under this directory
    p.add_argument("--dry-run", action="store_true", help="only say what it would write")
    u = sub.add_parser("uninstall", help="remove what `wulf install` wrote",
                       description="Removes the files `wulf install` wrote and nobody changed since (the job "
                                   "database, the key and the certificates stay).")
    u.add_argument("--root", default="/", help=argparse.SUPPRESS)
    u.add_argument("--dry-run", action="store_true", help="only say what it would remove")


def _under(root: str, path: str) -> Path:
    return Path(root) / path.lstrip("/")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _exe() -> str:
    found = shutil.which("wulf") or os.path.join(os.path.dirname(sys.executable), "wulf")
    return os.path.abspath(found)


def cmd_install(args: argparse.Namespace, config: Config) -> int:
    if args.root == "/" and os.geteuid() != 0 and not args.dry_run:
        raise UsageError("wulf install writes to /etc: run it as root (or with --dry-run)")
    server = args.server
    if server is None:
        if args.role != "server":
            raise UsageError(f"wulf install {args.role} needs --server URL (e.g. https://master.example.org:7878)")
        import socket

        server = f"https://{socket.getfqdn()}:7878"
    manifest_path = _under(args.root, MANIFEST)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"files": {}}
    for f in install.plan(args.role, _exe(), server, args.purge_hours):
        target = _under(args.root, f.path)
        if f.is_config and target.exists():
            print(f"kept {f.path} (it is there already)")
            continue
        print(f"{'would write' if args.dry_run else 'wrote'} {f.path}")
        if args.dry_run:
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.text)
            target.chmod(f.mode)
        except OSError as e:
            raise WulfError(f"cannot write {target}: {e.strerror}") from None
        manifest["files"][f.path] = _hash(f.text)
    if not args.dry_run:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(install.next_steps(args.role, server))
    return 0


def cmd_uninstall(args: argparse.Namespace, config: Config) -> int:
    manifest_path = _under(args.root, MANIFEST)
    if not manifest_path.exists():
        print("nothing to remove: `wulf install` wrote nothing here")
        return 0
    files: dict[str, str] = json.loads(manifest_path.read_text()).get("files", {})
    for path, digest in sorted(files.items()):
        target = _under(args.root, path)
        try:
            text = target.read_text()
        except FileNotFoundError:
            continue
        if _hash(text) != digest:
            print(f"kept {path} (changed since `wulf install` wrote it)")
            continue
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
        if not args.dry_run:
            target.unlink()
    if not args.dry_run:
        manifest_path.unlink()
        print("then: systemctl daemon-reload")
    return 0
