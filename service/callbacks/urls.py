"""Whether a callback URL is safe to call, and the address to connect to.

A callback URL is checked twice: at intake (so the platform hears about a bad URL at once)
and at every delivery, because DNS can change in between. At delivery the request goes to the
very address that was checked (the host name is kept for the Host header, SNI and the
certificate), so a name cannot resolve to a public address for the check and to an internal
one for the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class UnsafeCallbackURL(ValueError):
    """A callback URL commentguard refuses to call."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect for a checked URL: `address` is None for an allowlisted host."""

    url: str
    host: str
    port: int
    address: str | None


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits: NAT64's
# well-known and local-use prefixes (RFC 6052, RFC 8215). A NAT64 gateway connects to the
# IPv4 address, so the address is as private as that one.
NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, if any: IPv4-mapped (::ffff:a.b.c.d),
    IPv4-compatible (::a.b.c.d), 6to4 (2002:aabb:ccdd::), NAT64 (64:ff9b::a.b.c.d) or a
    Teredo client's (2001:0::)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in prefix for prefix in NAT64_PREFIXES):
        return low
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, not :: or ::1
        return low
    return None


def is_public(address: IPAddress) -> bool:
    """Whether a callback may go to `address`: a global unicast address, and, for an IPv6
    address that carries an IPv4 one, that IPv4 address is too."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def check_callback_url(
    url: str, allowed_hosts: Sequence[str], resolver: Resolver = resolve
) -> Target:
    """Where `url` may be called, or UnsafeCallbackURL saying why it may not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallbackURL(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeCallbackURL("only http and https callback URLs are allowed")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UnsafeCallbackURL("the callback URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    if _allowlisted(host, port, allowed_hosts):
        return Target(url, host, port, None)
    try:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host, port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise UnsafeCallbackURL(f"the callback host {host!r} does not resolve") from exc
    if not addresses:
        raise UnsafeCallbackURL(f"the callback host {host!r} does not resolve")
    for address in addresses:
        if not is_public(address):
            raise UnsafeCallbackURL(
                f"the callback host {host!r} resolves to {address}, a loopback, private, "
                "link-local or reserved address; allow it with COMMENTGUARD_CALLBACK_ALLOWED_HOSTS"
            )
    return Target(url, host, port, str(addresses[0]))


def needs_lookup(url: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether checking `url` may ask DNS (slow: not on an event loop): False for an
    allowlisted host or an IP address literal, or a URL refused before any lookup."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or _allowlisted(host, port, allowed_hosts):
        return False
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return True
    return False


def _allowlisted(host: str, port: int, allowed_hosts: Sequence[str]) -> bool:
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    names = {bare, shown, f"{shown}:{port}"}
    return any(entry.lower() in names for entry in allowed_hosts)
