"""wulf token and wulf init: API tokens, and the keys and certificates of a new cluster."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wulf.cli.common import ArgParser, format_table, print_json
from wulf.config import Config
from wulf.errors import UsageError

TOKEN_HELP = """\
API tokens let the HTTP API and the web page know you without the wulf agent of a machine of the
cluster: send one as `Authorization: Bearer TOKEN`, set WULF_TOKEN for the commands, or sign in on
the web page with it. A token is shown once, when it is made; the server keeps only its hash. It acts
with all your rights until it expires or you revoke it; a --read-only one may only look (jstat, the web
page, qwait), for a dashboard or a monitoring script.
"""


def token_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    tok = sub.add_parser("token", help="make, list and revoke API tokens", description=TOKEN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = tok.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="make a token (printed once)")
    create.add_argument("--name", default="", help="what it is for (shown by `wulf token list`)")
    create.add_argument("--days", type=float, help="it expires after this many days (default: never)")
    create.add_argument("--read-only", action="store_true",
                        help="it may look (jstat, the web page, qwait), not change anything (for dashboards, "
                             "monitoring)")
    create.add_argument("--json", action="store_true")
    lst = tsub.add_parser("list", help="your tokens (administrators: everyone's)")
    lst.add_argument("--json", action="store_true")
    revoke = tsub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int)


def _when(t: float | None) -> str:
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_token(args: argparse.Namespace, config: Config) -> int:
    from wulf.client import Client

    client = Client()
    if args.token_cmd == "create":
        reply = client.create_token(args.name, args.days, args.read_only)
        if args.json:
            print_json(reply)
        else:
            print(reply["token"])
            access = "read-only " if reply.get("read_only") else ""
            print(f"{access}token {reply['id']} of {reply['user']}, expires {_when(reply['expires'])}; it is not shown "
                  f"again (`wulf token revoke {reply['id']}` revokes it)", file=sys.stderr)
        return 0
    if args.token_cmd == "list":
        tokens = client.tokens()
        if args.json:
            print_json({"tokens": tokens})
        elif not tokens:
            print("no tokens (`wulf token create` makes one)")
        else:
            rows = [[str(t["id"]), t["user"], "read-only" if t.get("read_only") else "full", _when(t["created"]),
                     _when(t["expires"]), t["name"]] for t in tokens]
            print(format_table(["ID", "USER", "ACCESS", "CREATED", "EXPIRES", "NAME"], rows, right=[0]))
        return 0
    client.revoke_token(args.id)
    print(f"revoked token {args.id}")
    return 0


def check_tls(config: Config, url: str) -> None:
    """Refuse plain text to another host when the cluster speaks TLS ([tls] ca or cert is set)."""
    if (config.tls.ca or config.tls.cert) and url.lower().startswith("http://"):
        raise UsageError(f"this cluster speaks TLS ([tls] in {config.path or 'the configuration'}): "
                         f"use https:// for {url}")


INIT_HELP = """\
Makes what a cluster of several machines needs to be safe, in one directory (default /etc/wulf):
the cluster key (which the server, every agent and root share, and nobody else), a certificate
authority of the cluster's own, a certificate for the server signed by it, and a wulf.toml that
uses them (the same file on every node). Then it prints how to copy them to the nodes.

It never overwrites a key or a certificate. Run it as root on the machine that will run the server.
"""

_KEY, _CA, _CA_KEY, _CERT, _CERT_KEY, _TOML = "cluster.key", "ca.pem", "ca.key", "server.pem", "server.key", "wulf.toml"


def init_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    ini = sub.add_parser("init", help="make the key, CA and server certificate of a new cluster",
                         description=INIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ini.add_argument("--dir", default="/etc/wulf", help="where to put them (default /etc/wulf)")
    ini.add_argument("--host", action="append", default=[], metavar="NAME",
                     help="a name or address by which nodes reach the server (repeat it; default: this "
                          "machine's names and address)")
    ini.add_argument("--port", type=int, default=7878, help="the server's TCP port (default 7878)")
    ini.add_argument("--state", default="/var/lib/wulf", help="the server's state directory, for wulf.toml "
                                                              "(default /var/lib/wulf)")


def _this_machine() -> list[str]:
    import socket

    names = [socket.getfqdn(), socket.gethostname()]
    try:
        names.append(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    return names


def _toml_text(d: Path, server: str, args: argparse.Namespace) -> str:
    return f"""# wulf configuration made by `wulf init`: the same file on every node (see examples/wulf.toml).
[server]
listen = "0.0.0.0:{args.port}"
state_dir = "{args.state}"

[client]
server = "{server}"

[auth]
key_file = "{d / _KEY}"

[tls]
ca = "{d / _CA}"
cert = "{d / _CERT}"
key = "{d / _CERT_KEY}"
"""


def _add_tls(d: Path) -> bool:
    """A wulf.toml that is there already (``wulf install`` wrote it) and says nothing of TLS gets the
    cluster's [tls] lines at its end; True if they were added."""
    import tomllib

    path = d / _TOML
    try:
        text = path.read_text()
        if "tls" in tomllib.loads(text):
            return False
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # wulf doctor and the daemons say what is wrong with it
    tls = (f"\n# added by `wulf init`: the server speaks TLS; agents and commands check it with the cluster's CA\n"
           f'[tls]\nca = "{d / _CA}"\ncert = "{d / _CERT}"\nkey = "{d / _CERT_KEY}"\n')
    with path.open("a") as f:
        f.write(("" if text.endswith("\n") or not text else "\n") + tls)
    return True


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    from wulf.auth import pki
    from wulf.auth.key import write_key

    d = Path(args.dir).absolute()
    there = [n for n in (_KEY, _CA, _CA_KEY, _CERT, _CERT_KEY) if (d / n).exists()]
    if there:
        raise UsageError(f"{d} already holds {', '.join(there)}: wulf init never overwrites keys or "
                         f"certificates (use another --dir, or move them away first)")
    hosts: list[str] = []
    for h in [*(args.host or _this_machine()), "localhost", "127.0.0.1", "::1"]:
        if h and h not in hosts:
            hosts.append(h)
    d.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca()
    server = pki.make_server_cert(ca, hosts)
    write_key(d / _KEY)
    pki.write_new(d / _CA, ca.cert, 0o644)
    pki.write_new(d / _CA_KEY, ca.key, 0o600)
    pki.write_new(d / _CERT, server.cert, 0o644)
    pki.write_new(d / _CERT_KEY, server.key, 0o600)
    host = hosts[0]
    url = f"https://[{host}]:{args.port}" if ":" in host else f"https://{host}:{args.port}"
    toml = _toml_text(d, url, args)
    wrote_toml = not (d / _TOML).exists()
    if wrote_toml:
        pki.write_new(d / _TOML, toml.encode(), 0o644)
    elif _add_tls(d):
        wrote_toml = True
    print(f"""made a new wulf cluster in {d}:
  {_KEY:<12} the cluster key (root only): copy it to every node, keep it secret
  {_CA:<12} the cluster's certificate authority: copy it to every node
  {_CA_KEY:<12} the authority's key (root only): keep it here or offline; nodes never need it
  {_CERT:<12} the server's certificate, for {', '.join(hosts)}
  {_CERT_KEY:<12} the server's key (root only): stays here
  {_TOML:<12} {'the configuration (TLS added): copy it to every node' if wrote_toml
                  else 'was there already, with a [tls] of its own: check it has these lines'}""")
    if not wrote_toml:
        print("\n" + toml)
    print(f"""
On this machine:      wulf server          (and wulf agent, if it runs jobs too)
On every other node, as root:
  install -d -m 755 {d}
  scp {host}:{d}/{{{_TOML},{_CA}}} {d}/
  scp -p {host}:{d}/{_KEY} {d}/ && chmod 600 {d}/{_KEY}
  wulf agent           (it reaches the server at {url}, checked with {d / _CA})
Users need nothing: the agent of their machine vouches for them.""")
    return 0
