"""Which client address the console can trust for the sign-in limit (services/operations/review/sessions.py).

Behind a TLS-terminating proxy every request comes from the proxy: limiting by that address lets
anyone lock everyone out. The peer of a direct connection is trustworthy (TCP); a peer listed in
LFR_TRUSTED_PROXIES is a proxy, and the client is the right-most X-Forwarded-For entry that is not
itself a trusted proxy (entries to its left are whatever the client wrote). X-Forwarded-For from
any other peer is ignored. No trustworthy address (a trusted proxy sent none): no address limit;
the per-account lock still applies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; ValueError naming a bad entry."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


def _is_proxy(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str | None:
    """The client address to rate-limit by, or None when none can be trusted."""
    if not peer:
        return None
    if not _is_proxy(peer, proxies):
        return peer
    for hop in reversed([h.strip() for h in (forwarded_for or "").split(",") if h.strip()]):
        if not _is_proxy(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None  # garbage where an address should be: trust nothing
    return None
