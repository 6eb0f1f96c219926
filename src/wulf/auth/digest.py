"""What a credential is for, as a digest: standard library only (the commands import it over TCP)."""

from __future__ import annotations

import hashlib


def request_digest(method: str, target: str, body: bytes) -> str:
    """What a request's credential is for: SHA-256 of ``METHOD TARGET\\n`` and the body, in hex.
    ``target`` is the path with its query string, as sent."""
    h = hashlib.sha256(f"{method.upper()} {target}\n".encode("latin-1"))
    h.update(body)
    return h.hexdigest()


def agent_digest(node: str) -> str:
    """What an agent's credential is for: registering ``node``."""
    return hashlib.sha256(f"agent {node}".encode()).hexdigest()
