"""The web page's sessions: who a browser is, and the token that proves a request came from the page.

A browser signs in once (with an API token, or with a one-time link that ``wulf up`` and ``wulf web``
print for the user who ran them) and gets a session: a random id in a cookie (HttpOnly,
SameSite=Strict). The server keeps the sessions in memory, by the hash of their id, so a restart of
the server signs every browser out; signing out ends a session at once.

A session may read with its cookie alone. It may change something only with the session's CSRF token
in the ``X-Wulf-CSRF`` header (the page reads it from ``GET /api/v1/web/session``, which another
site's page cannot read), and only through the requests the page makes (:data:`ACTIONS`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "wulf_session"
CSRF_HEADER = b"x-wulf-csrf"
SESSION_TTL = 24 * 3600.0
"""Seconds a session lasts from its sign-in."""
LINK_TTL = 600.0
"""Seconds a one-time sign-in link is good for."""
MAX_SESSIONS = 10_000
MAX_LINKS = 1_000
#: what a session may ask besides GET (with its CSRF token): the page's forms and buttons
ACTIONS = frozenset({"/api/v1/jobs", "/api/v1/jobs/cancel", "/api/v1/jobs/hold", "/api/v1/jobs/release",
                     "/api/v1/jobs/nice", "/api/v1/jobs/modify", "/api/v1/wait", "/api/v1/queues"})
#: and an administrator's buttons on a node's page (the route checks that they are one)
NODE_ACTIONS = re.compile(r"/api/v1/admin/nodes/[^/]+/(drain|resume)")


def may_ask(path: str) -> bool:
    """Whether a session may ask ``path`` with a POST (see ACTIONS)."""
    return path in ACTIONS or NODE_ACTIONS.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class Session:
    uid: int
    gid: int
    token_id: int | None  # signed in with this API token (the session ends with it); None: with a link
    read_only: bool
    csrf: str
    expires: float


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class WebSessions:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}  # hash of the cookie -> session
        self._links: dict[str, tuple[int, int, float]] = {}  # hash of the code -> (uid, gid, until when)

    def open(self, uid: int, gid: int, token_id: int | None, read_only: bool, now: float,
             until: float | None = None) -> str:
        """A new session; its id (the cookie's value). It ends at ``until`` if that is sooner than its TTL."""
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            if len(self._sessions) >= MAX_SESSIONS:  # the oldest go
                oldest = sorted(self._sessions, key=lambda k: self._sessions[k].expires)[: MAX_SESSIONS // 10]
                for k in oldest:
                    del self._sessions[k]
        sid = secrets.token_urlsafe(32)
        expires = now + SESSION_TTL if until is None else min(now + SESSION_TTL, until)
        self._sessions[_key(sid)] = Session(uid, gid, token_id, read_only, secrets.token_urlsafe(32), expires)
        return sid

    def find(self, sid: str, now: float) -> Session | None:
        s = self._sessions.get(_key(sid))
        if s is None or s.expires <= now:
            return None
        return s

    def close(self, sid: str) -> None:
        self._sessions.pop(_key(sid), None)

    def close_token(self, token_id: int) -> None:
        """End the sessions signed in with a token (it was revoked)."""
        self._sessions = {k: s for k, s in self._sessions.items() if s.token_id != token_id}

    def link(self, uid: int, gid: int, now: float) -> str:
        """A one-time sign-in code for ``uid``, good for LINK_TTL seconds."""
        if len(self._links) >= MAX_LINKS:
            self._links = {k: v for k, v in self._links.items() if v[2] > now}
            if len(self._links) >= MAX_LINKS:
                self._links.pop(next(iter(self._links)))
        code = secrets.token_urlsafe(32)
        self._links[_key(code)] = (uid, gid, now + LINK_TTL)
        return code

    def peek(self, code: str, now: float) -> tuple[int, int] | None:
        """Whose a code is, if it is good (it stays good)."""
        found = self._links.get(_key(code))
        return found[:2] if found is not None and found[2] > now else None

    def redeem(self, code: str, now: float) -> tuple[int, int] | None:
        """Whose a code is, if it is good; it is good no more."""
        found = self._links.pop(_key(code), None)
        return found[:2] if found is not None and found[2] > now else None


def csrf_ok(session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())
