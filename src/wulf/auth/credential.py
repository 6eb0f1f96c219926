"""Credentials in the manner of MUNGE: who (uid, gid), where (host), when, signed with the cluster key.

A credential is one line of text, ``wulf1.<payload>.<signature>``: the payload is compact JSON in
base64url, the signature HMAC-SHA256 over ``wulf1.<payload>`` with a key derived from the cluster
key. It says:

====  ===================================================================================
k     its kind: ``user`` (a person, vouched for by the agent of their machine) or ``agent``
u, g  uid and primary gid
h     the host that made it
t     when it was made (seconds since the epoch)
n     a random nonce: a credential is good for one request only
d     the SHA-256 of what it is for (a request: its method, target and body; an agent: its
      node name), so a credential seen in passing cannot be used for anything else
====  ===================================================================================

The server refuses a credential that is unsigned or altered, made for another purpose, more than
``ttl`` seconds old (or made more than ``ttl`` seconds in the future by its clock: the clocks of a
cluster must agree, as MUNGE's do), or seen before: it keeps the nonces it has accepted until they
would have expired anyway (:class:`ReplayCache`), and refuses those made before it started (whose
nonces it did not keep).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from wulf.auth.digest import agent_digest, request_digest
from wulf.auth.key import ClusterKey
from wulf.errors import Unauthenticated

__all__ = ["AGENT", "USER", "Credential", "ReplayCache", "agent_digest", "check_fresh", "check_use", "decode",
           "encode", "request_digest", "verify"]

PREFIX = "wulf1"
USER = "user"
AGENT = "agent"
MAX_LENGTH = 2048
"""Longest credential accepted (a real one is about 250 characters)."""


@dataclass(frozen=True, slots=True)
class Credential:
    kind: str
    uid: int
    gid: int
    host: str
    time: float
    nonce: str
    digest: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: ClusterKey, signed: str) -> str:
    return _b64(hmac.new(key.derive("credential"), signed.encode("ascii"), hashlib.sha256).digest())


def encode(key: ClusterKey, kind: str, uid: int, gid: int, host: str, now: float, digest: str = "") -> str:
    """A new credential (with a fresh nonce)."""
    payload = {"k": kind, "u": uid, "g": gid, "h": host, "t": round(now, 3), "n": secrets.token_hex(16),
               "d": digest}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_sign(key, signed)}"


def _field(payload: dict[str, Any], name: str, kind: type) -> Any:
    value = payload.get(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise Unauthenticated("credential refused: it is malformed")
    return value


def decode(key: ClusterKey, text: str) -> Credential:
    """Check the signature and the form of a credential (not its age, purpose or use: see :func:`verify`)."""
    parts = text.split(".")
    if len(text) > MAX_LENGTH or len(parts) != 3 or parts[0] != PREFIX:
        raise Unauthenticated("credential refused: it is not a wulf credential")
    signed = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(key, signed), parts[2]):
        raise Unauthenticated("credential refused: its signature does not match (altered, or not signed "
                              "with this cluster's key)")
    try:
        payload = json.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError):
        raise Unauthenticated("credential refused: it is malformed") from None
    if not isinstance(payload, dict):
        raise Unauthenticated("credential refused: it is malformed")
    return Credential(
        kind=_field(payload, "k", str), uid=_field(payload, "u", int), gid=_field(payload, "g", int),
        host=_field(payload, "h", str), time=_field(payload, "t", float), nonce=_field(payload, "n", str),
        digest=_field(payload, "d", str),
    )


class ReplayCache:
    """The nonces of accepted credentials, each kept until its credential would have expired."""

    SWEEP_EVERY = 1.0  # seconds between sweeps of the expired ones

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._until)

    def add(self, nonce: str, until: float, now: float) -> bool:
        """Remember ``nonce`` until ``until``; False if it is remembered already (a replay)."""
        if now >= self._next_sweep:
            self._until = {n: t for n, t in self._until.items() if t > now}
            self._next_sweep = now + self.SWEEP_EVERY
        seen = self._until.get(nonce)
        if seen is not None and seen > now:
            return False
        self._until[nonce] = until
        return True


def check_fresh(cred: Credential, *, kind: str, now: float, ttl: float, not_before: float = 0.0) -> None:
    """Refuse a credential of another kind, or one too old or too new to be good now, or made before
    ``not_before`` (when the server started: whether it was used before, the server cannot know)."""
    if cred.kind != kind:
        raise Unauthenticated(f"credential refused: it is a credential of kind {cred.kind!r}, not {kind!r}")
    age = now - cred.time
    if age > ttl:
        raise Unauthenticated(f"credential refused: it expired (made {age:.0f}s ago on {cred.host}; "
                              f"credentials last {ttl:g}s; do the clocks agree?)")
    if -age > ttl:
        raise Unauthenticated(f"credential refused: it was made {-age:.0f}s in the future by the clock of "
                              f"{cred.host}; the clocks of the cluster must agree")
    if cred.time < not_before:
        raise Unauthenticated(f"credential refused: it was made before the server started ({not_before - cred.time:.1f}s "
                              f"before, on {cred.host}), so it may have been used already; try again (do the clocks "
                              "agree?)")


def check_use(cred: Credential, *, digest: str, now: float, ttl: float, replays: ReplayCache) -> None:
    """Refuse a credential made for something else, or used before; else note its use."""
    if not hmac.compare_digest(cred.digest, digest):
        raise Unauthenticated("credential refused: it was made for another request")
    if not replays.add(cred.nonce, cred.time + ttl, now):
        raise Unauthenticated("credential refused: it was used before (a replay)")


def verify(key: ClusterKey, text: str, *, kind: str, digest: str, now: float, ttl: float,
           replays: ReplayCache, not_before: float = 0.0) -> Credential:
    """The credential in ``text`` if it is good for this use now; else Unauthenticated says why.

    (The server checks a request's credential in two steps, :func:`check_fresh` before it reads the
    body and :func:`check_use` after, so that nobody without a good credential makes it read one.)"""
    cred = decode(key, text)
    check_fresh(cred, kind=kind, now=now, ttl=ttl, not_before=not_before)
    check_use(cred, digest=digest, now=now, ttl=ttl, replays=replays)
    return cred
