"""Who sent a request, as the server has established it (never as the request says)."""

from __future__ import annotations

import pwd
from dataclasses import dataclass

SOCKET = "socket"  # the kernel's peer credentials on the server's Unix socket
CREDENTIAL = "credential"  # a credential signed with the cluster key (from the agent of the caller's host)
TOKEN = "token"  # an API token
WEB = "web"  # a session of the web page (signed in with an API token or a one-time link)


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    uid: int
    gid: int
    via: str
    host: str = ""  # where the request came from: "local", a host name, an address
    admin: bool = False
    read_only: bool = False  # came with a read-only API token: may look, not change anything

    def __str__(self) -> str:
        return self.user

    def describe(self) -> str:
        return f"{self.user} (uid {self.uid}, {self.via}{', from ' + self.host if self.host else ''})"


def user_name(uid: int) -> str:
    """The name of ``uid`` on this machine; the number itself for a uid without a name here."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
