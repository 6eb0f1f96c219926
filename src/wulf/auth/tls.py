"""TLS between the hosts of a cluster: the server's context, and the one its clients check it with.

``wulf init`` makes a certificate authority for the cluster and a server certificate it signed (see
:mod:`wulf.auth.pki`); the server speaks only TLS on TCP when ``[tls] cert`` is set, and agents and
commands check its certificate against ``[tls] ca``. Standard library only (the commands use it).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from wulf.errors import ConfigError


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The server's TLS context (TLS 1.2 or newer), its private key checked to be private."""
    from wulf.auth.key import check_private

    if not key:
        raise ConfigError("[tls] cert is set but [tls] key is not: the server needs its private key")
    try:
        check_private(Path(key), os.stat(key), "the server's TLS key")
    except FileNotFoundError:
        raise ConfigError(f"no TLS key at {key} ([tls] key)") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise ConfigError(f"no TLS certificate at {e.filename or cert} ([tls] cert)") from None
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"cannot use the TLS certificate {cert} with the key {key}: {e}") from None
    return ctx


def client_context(ca: str) -> ssl.SSLContext:
    """A context that trusts the cluster's CA (``ca``; the system's authorities if "") and checks
    the server's name."""
    try:
        ctx = ssl.create_default_context(cafile=ca or None)
    except FileNotFoundError:
        raise ConfigError(f"no CA certificate at {ca} ([tls] ca): copy ca.pem from the server "
                          f"(`wulf init` printed how)") from None
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"cannot use the CA certificate {ca}: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
