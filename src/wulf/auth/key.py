"""The cluster key: a random secret that the server, every agent and root can read, and nobody else.

It lives in a file of its own (``[auth] key_file``; by default ``cluster.key`` in the server's state
directory), one line of base64. A key file that others than its owner may read is refused, as ssh
refuses such a private key. Each use (credentials, agents) signs with a key derived from it, so that
a signature made for one purpose is worthless for another.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from wulf.errors import ConfigError

KEY_BYTES = 32
"""Bytes of randomness in a new key (and the least a key file may hold)."""


class ClusterKey:
    """The key, and the keys derived from it for each purpose."""

    __slots__ = ("_derived", "_secret", "path")

    def __init__(self, secret: bytes, path: str = "") -> None:
        if len(secret) < KEY_BYTES:
            raise ConfigError(f"the cluster key {path or ''} is too short: {len(secret)} bytes, at least "
                              f"{KEY_BYTES} are needed (`wulf init` makes a good one)")
        self._secret = secret
        self._derived: dict[str, bytes] = {}
        self.path = path

    def derive(self, purpose: str) -> bytes:
        """The key for one purpose (``credential``, ``token``, ...): HMAC-SHA256(key, purpose)."""
        k = self._derived.get(purpose)
        if k is None:
            k = self._derived[purpose] = hmac.new(self._secret, b"wulf/" + purpose.encode(), hashlib.sha256).digest()
        return k

    def __repr__(self) -> str:  # never show the secret
        return f"ClusterKey({self.path or '<memory>'})"


def new_secret() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode(secret: bytes) -> str:
    return base64.b64encode(secret).decode("ascii") + "\n"


def write_key(path: Path, secret: bytes | None = None, *, exist_ok: bool = False) -> bool:
    """Write a new key file readable by its owner only; False when one is there already (and
    ``exist_ok``). Never overwrites a key: a cluster whose key changes loses all its agents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if exist_ok:
            return False
        raise ConfigError(f"{path} exists already; wulf does not overwrite a cluster key") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, encode(secret or new_secret()).encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return True


def check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a secret file that is not a regular file, or that others may read or write."""
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(f"{what} {path} may be read by others (mode {stat.S_IMODE(st.st_mode):o}); "
                          f"`chmod 600 {path}` and keep it to root and the wulf daemons")
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigError(f"{what} {path} belongs to uid {st.st_uid}, not to root or to this user")


def load_key(path: Path) -> ClusterKey:
    """Read a key file (after checking who may read it). ConfigError says what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(f"no cluster key at {path}: copy the server's key there (readable by root only; "
                          f"`wulf init` prints how), or set [auth] key_file") from None
    except OSError as e:
        raise ConfigError(f"cannot read the cluster key {path}: {e.strerror}") from None
    try:
        check_private(path, os.fstat(fd), "the cluster key")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        secret = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the cluster key {path} is not one line of base64 (`wulf init` makes one)") from None
    return ClusterKey(secret, str(path))


def ensure_key(path: Path) -> tuple[ClusterKey, bool]:
    """The key at ``path``, made first if there is none (for the server and `wulf up`); and whether
    it was made now."""
    made = write_key(path, exist_ok=True)
    return load_key(path), made
