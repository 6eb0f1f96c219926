"""What the server needs to tell who asks and whether they may.

The identity of a request comes from how it arrived, never from what it says:

- on the server's Unix socket, the kernel names the connecting process (``SO_PEERCRED``; see
  :mod:`wulf.server.peer`);
- over TCP, a credential signed with the cluster key (header ``X-Wulf-Credential``), which the agent
  of the caller's machine made for that uid and that request (see :mod:`wulf.auth.credential`);
- or an API token (``Authorization: Bearer wulf_...``);
- or, in the browser, a session of the web page (see :mod:`wulf.server.websession`).

Root, the user the server runs as (the owner of a ``wulf up``) and the members of ``[server]
admin_group`` are administrators. Whether someone is one is looked up again after :data:`ADMIN_TTL`
seconds (off the event loop: the group database may be a directory service), so that leaving the group
takes effect without a reload.

A credential is good once: the server remembers the nonces it accepted until they expire. It does not
remember them across a restart; it refuses instead every credential made before it started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import logging
import os
import pwd
import time
from dataclasses import dataclass

from wulf.auth import credential
from wulf.auth.credential import Credential, ReplayCache
from wulf.auth.identity import CREDENTIAL, SOCKET, TOKEN, WEB, Caller, user_name
from wulf.auth.key import ClusterKey
from wulf.auth.netmask import AllowList
from wulf.auth.ratelimit import RateLimiter
from wulf.auth.tokens import Token, TokenBook, looks_like_token, new_token, token_hash
from wulf.config import Config
from wulf.errors import Forbidden, NotFound, Unauthenticated
from wulf.protocol import Hello, TokenReply
from wulf.server.audit import AuditLog
from wulf.server.edge import Limits
from wulf.server.websession import Session, WebSessions
from wulf.store.base import JobStore

log = logging.getLogger("wulf.server")

ADMIN_TTL = 10.0
"""Seconds a uid's name and administrator status are kept before they are looked up again."""
PUBLIC_MAX_BODY = 64 * 1024
"""Largest body of a request whose sender is not known yet (the login form, ...)."""

PASSWORD_TRIES = 0.1
"""Passwords a second one address may try at the web interface's sign-in (after PASSWORD_BURST at once)."""
PASSWORD_BURST = 5

NO_IDENTITY = ("who are you? Over TCP a request needs a credential from the wulf agent of your machine "
               "(is one running there? it listens on [auth] agent_socket) or an API token "
               "(Authorization: Bearer ..., made with `wulf token create`)")


@dataclass(frozen=True, slots=True)
class _Known:
    user: str
    admin: bool
    until: float


def _in_group(user: str, group: str) -> bool:
    """Whether ``user`` is a member of ``group`` now (asked of the system afresh: no cache)."""
    try:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    try:
        return gid in os.getgrouplist(user, pw.pw_gid)
    except OSError:
        return gid == pw.pw_gid


class Security:
    def __init__(self, config: Config, key: ClusterKey, store: JobStore, owner_only: bool = False) -> None:
        self.key = key
        self.store = store
        self.replays = ReplayCache()
        self.started = time.time()  # credentials made before are refused: their nonces were not kept
        self.tokens = TokenBook(store.tokens())
        self.own_uid = os.geteuid()  # whoever runs the server (root, or the owner of a `wulf up`) administers it
        self.owner_only = owner_only  # a personal cluster: its owner (and root) alone may use its socket
        self.limits = Limits()  # what a connection may cost (wulf.server.edge reads it)
        self._known: dict[int, _Known] = {}
        self.web = WebSessions()  # the web page's sessions
        self.password_tries = RateLimiter(PASSWORD_TRIES, PASSWORD_BURST)  # per address (see web.login)
        self.reload(config)

    @staticmethod
    def check(config: Config) -> None:
        """Raise ConfigError for a configuration this cannot take (before anything changes)."""
        AllowList(config.server.allow)
        AllowList(config.server.trusted_proxies, key="trusted_proxies")

    def reload(self, config: Config) -> None:
        """Take a new configuration (see :meth:`check`)."""
        self.allow = AllowList(config.server.allow)
        self.limiter = RateLimiter(config.server.rate_limit, config.server.rate_burst)
        self.admin_group = config.server.admin_group
        self.ttl = config.auth.ttl
        self.audit = AuditLog(config.audit_path())
        self.max_body = int(config.server.max_body_mb * 2**20)
        self.metrics_public = config.metrics.public
        self.pam_service = config.web.pam_service  # passwords at the web interface's sign-in ("" : none)
        self.limits.max_connections = config.server.max_connections
        self.limits.request_timeout = config.server.request_timeout
        self._known.clear()

    # ------------------------------------------------------------------ who

    def _look_up(self, uid: int) -> tuple[str, bool]:
        name = user_name(uid)
        return name, uid in (0, self.own_uid) or bool(self.admin_group) and _in_group(name, self.admin_group)

    async def caller(self, uid: int, gid: int, via: str, host: str) -> Caller:
        now = time.monotonic()
        k = self._known.get(uid)
        if k is None or k.until < now:
            name, admin = await asyncio.to_thread(self._look_up, uid)
            k = self._known[uid] = _Known(name, admin, time.monotonic() + ADMIN_TTL)
        return Caller(k.user, uid, gid, via, host, k.admin)

    def foreign(self, peer: tuple[int, int, int]) -> bool:
        """Whether a process on the Unix socket may not use a personal cluster (it is not its owner's)."""
        return self.owner_only and peer[1] not in (0, self.own_uid)

    async def from_peer(self, peer: tuple[int, int, int]) -> Caller:
        _, uid, gid = peer
        return await self.caller(uid, gid, SOCKET, "local")

    async def from_token(self, text: str) -> Caller:
        token = self.tokens.find(text, time.time()) if looks_like_token(text) else None
        if token is None:
            raise Unauthenticated("the API token is not good (mistyped, revoked or expired); "
                                  "`wulf token create` makes a new one")
        caller = await self.caller(token.uid, token.gid, TOKEN, "")
        return dataclasses.replace(caller, read_only=True) if token.read_only else caller

    async def from_session(self, session: Session, host: str) -> Caller:
        """Who a web session is; Unauthenticated if the token it was signed in with is gone."""
        if session.token_id is not None:
            token = self.tokens.by_id.get(session.token_id)
            if token is None or token.expired(time.time()):
                raise Unauthenticated("the API token this browser signed in with is revoked or expired: sign in again")
        caller = await self.caller(session.uid, session.gid, WEB, host)
        return dataclasses.replace(caller, read_only=True) if session.read_only else caller

    def credential(self, text: str) -> Credential:
        """A request's credential, signed and fresh (its use is checked by :meth:`from_credential`)."""
        cred = credential.decode(self.key, text)
        credential.check_fresh(cred, kind=credential.USER, now=time.time(), ttl=self.ttl, not_before=self.started)
        return cred

    async def from_credential(self, cred: Credential, digest: str) -> Caller:
        credential.check_use(cred, digest=digest, now=time.time(), ttl=self.ttl, replays=self.replays)
        return await self.caller(cred.uid, cred.gid, CREDENTIAL, cred.host)

    def agent(self, hello: Hello) -> int:
        """The uid an agent runs as, if its hello carries a good credential for its node; else
        Unauthenticated says why."""
        if not hello.auth:
            raise Unauthenticated("the agent sent no credential (it needs the cluster key)")
        cred = credential.verify(self.key, hello.auth, kind=credential.AGENT,
                                 digest=credential.agent_digest(hello.node.name), now=time.time(),
                                 ttl=self.ttl, replays=self.replays, not_before=self.started)
        return cred.uid

    # ------------------------------------------------------------------ API tokens

    async def create_token(self, caller: Caller, name: str, days: float | None, read_only: bool = False) -> TokenReply:
        if caller.via in (TOKEN, WEB):
            raise Forbidden("a token cannot make tokens: run `wulf token create` on a machine of the cluster")
        text = new_token()
        now = time.time()
        token = Token(self.tokens.next_id(), caller.user, caller.uid, caller.gid, name, token_hash(text), now,
                      None if days is None else now + days * 86400, read_only)
        await self.store.add_token(token.record())
        self.tokens.add(token)
        self.audit.record(caller, "token create", f"token {token.id}", "ok", name=name, read_only=read_only)
        return TokenReply(id=token.id, token=text, user=token.user, name=name, expires=token.expires,
                          read_only=read_only)

    def list_tokens(self, caller: Caller) -> list[dict[str, object]]:
        return [t.public() for t in sorted(self.tokens.by_id.values(), key=lambda t: t.id)
                if caller.admin or t.uid == caller.uid]

    async def revoke_token(self, caller: Caller, token_id: int) -> None:
        token = self.tokens.by_id.get(token_id)
        if token is None or not (caller.admin or token.uid == caller.uid):
            raise NotFound(f"no token {token_id} of yours (`wulf token list` shows them)")
        await self.store.remove_token(token_id)
        self.tokens.remove(token_id)
        self.web.close_token(token_id)
        self.audit.record(caller, "token revoke", f"token {token_id} of {token.user}", "ok")
