"""Which hosts count as loopback: where plain http is acceptable (this server's public URL, a
client's redirect URI, an allowlisted client metadata document), because nothing leaves the
machine."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """`localhost` (any case) or a loopback IP literal (127.0.0.0/8, ::1), as `urlsplit`
    gives a host (IPv6 without brackets)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["is_loopback_host"]
