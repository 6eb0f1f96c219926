"""API tokens: long random secrets a user makes with ``wulf token create`` for the HTTP API and the
web page (``Authorization: Bearer wulf_...``). The store keeps only their SHA-256: a token is shown
once, when it is made. With 256 bits of randomness a plain hash is enough (no slow hash is needed to
protect it from guessing, unlike a password)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

PREFIX = "wulf_"
MAX_LENGTH = 200


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def looks_like_token(text: str) -> bool:
    return text.startswith(PREFIX) and len(text) <= MAX_LENGTH


@dataclass(frozen=True, slots=True)
class Token:
    """A token's record (without the token itself)."""

    id: int
    user: str
    uid: int
    gid: int
    name: str
    hash: str
    created: float
    expires: float | None = None  # None: until revoked
    read_only: bool = False  # it may look (GET, and waiting for jobs), not change anything

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What `wulf token list` shows: everything but the hash."""
        d = asdict(self)
        del d["hash"]
        return d


class TokenBook:
    """The tokens the server knows, by hash, for a lookup per request without the store."""

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.by_hash: dict[str, Token] = {}
        self.by_id: dict[int, Token] = {}
        for r in records:
            self._add(Token(**r))

    def _add(self, t: Token) -> None:
        self.by_hash[t.hash] = t
        self.by_id[t.id] = t

    def next_id(self) -> int:
        return max(self.by_id, default=0) + 1

    def add(self, t: Token) -> None:
        self._add(t)

    def remove(self, token_id: int) -> Token | None:
        t = self.by_id.pop(token_id, None)
        if t is not None:
            self.by_hash.pop(t.hash, None)
        return t

    def find(self, token: str, now: float) -> Token | None:
        """The live token that ``token`` is, else None."""
        t = self.by_hash.get(token_hash(token))
        return None if t is None or t.expired(now) else t
