"""The network allow-list: from which addresses the server takes TCP connections at all."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from wulf.errors import ConfigError

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    def __init__(self, networks: Sequence[str], key: str = "allow") -> None:
        self.networks: list[_Network] = []
        for text in networks:
            try:
                self.networks.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"[server] {key}: {text!r} is not a network (examples: 10.0.0.0/8, "
                                  f"192.168.1.7, ::1/128)") from None

    def allows(self, host: str) -> bool:
        """Whether ``host`` (an address as the socket reports it) is in one of the networks."""
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.networks)
