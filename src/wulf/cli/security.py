"""wulf token and wulf init: API tokens, and the keys and certificates of a new cluster."""

from __future__ import annotations

import argparse
import sys
import time

from wulf.cli.common import ArgParser, format_table, print_json
from wulf.config import Config

TOKEN_HELP = """\
API tokens let the HTTP API and the web page know you without the wulf agent of a machine of the
cluster: send one as `Authorization: Bearer TOKEN`, set WULF_TOKEN for the commands, or sign in on
the web page with it. A token is shown once, when it is made; the server keeps only its hash. It acts
with all your rights until it expires or you revoke it.
"""


def token_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    tok = sub.add_parser("token", help="make, list and revoke API tokens", description=TOKEN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = tok.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="make a token (printed once)")
    create.add_argument("--name", default="", help="what it is for (shown by `wulf token list`)")
    create.add_argument("--days", type=float, help="it expires after this many days (default: never)")
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
        reply = client.create_token(args.name, args.days)
        if args.json:
            print_json(reply)
        else:
            print(reply["token"])
            print(f"token {reply['id']} of {reply['user']}, expires {_when(reply['expires'])}; it is not shown "
                  f"again (`wulf token revoke {reply['id']}` revokes it)", file=sys.stderr)
        return 0
    if args.token_cmd == "list":
        tokens = client.tokens()
        if args.json:
            print_json({"tokens": tokens})
        elif not tokens:
            print("no tokens (`wulf token create` makes one)")
        else:
            rows = [[str(t["id"]), t["user"], _when(t["created"]), _when(t["expires"]), t["name"]] for t in tokens]
            print(format_table(["ID", "USER", "CREATED", "EXPIRES", "NAME"], rows, right=[0]))
        return 0
    client.revoke_token(args.id)
    print(f"revoked token {args.id}")
    return 0
