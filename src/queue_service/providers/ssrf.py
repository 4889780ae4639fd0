"""An SSRF-safe HTTP transport: every connection resolves its host, checks every
address against the blocked ranges, and connects only to a checked address.

httpx-secure 2.0 was evaluated and not used: to pick an address it opens a TCP
probe to the hostname's first answer *before* validating it, so a name that
resolves to a private or metadata address is connected to before it is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> every address the name resolves to.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

# What a destination may never be, with the reason a refusal names. Anything
# else that Python does not consider globally reachable is refused too.
BLOCKED_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network (0.0.0.0/8)"),
    ("10.0.0.0/8", "private (10/8)"),
    ("100.64.0.0/10", "carrier-grade NAT (100.64/10)"),
    ("127.0.0.0/8", "loopback (127/8)"),
    ("169.254.0.0/16", "link-local / cloud metadata (169.254/16)"),
    ("172.16.0.0/12", "private (172.16/12)"),
    ("192.0.0.0/24", "IETF protocol assignments (192.0.0/24)"),
    ("192.0.2.0/24", "documentation (192.0.2/24)"),
    ("192.88.99.0/24", "6to4 relay anycast (192.88.99/24)"),
    ("192.168.0.0/16", "private (192.168/16)"),
    ("198.18.0.0/15", "benchmarking (198.18/15)"),
    ("198.51.100.0/24", "documentation (198.51.100/24)"),
    ("203.0.113.0/24", "documentation (203.0.113/24)"),
    ("224.0.0.0/4", "multicast (224/4)"),
    ("240.0.0.0/4", "reserved (240/4, incl. broadcast)"),
    ("::/128", "IPv6 unspecified (::)"),
    ("::1/128", "IPv6 loopback (::1)"),
    ("::/96", "IPv4-compatible IPv6 (::/96)"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6 (::ffff:0:0/96)"),
    ("64:ff9b::/96", "NAT64 (64:ff9b::/96)"),
    ("64:ff9b:1::/48", "local NAT64 (64:ff9b:1::/48)"),
    ("100::/64", "IPv6 discard (100::/64)"),
    ("2001::/23", "IETF protocol assignments incl. Teredo (2001::/23)"),
    ("2001:db8::/32", "documentation (2001:db8::/32)"),
    ("2002::/16", "6to4 (2002::/16)"),
    ("fc00::/7", "IPv6 unique local (fc00::/7)"),
    ("fe80::/10", "IPv6 link-local (fe80::/10)"),
    ("fec0::/10", "IPv6 site-local (fec0::/10)"),
    ("ff00::/8", "IPv6 multicast (ff00::/8)"),
)
_BLOCKED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), reason) for cidr, reason in BLOCKED_RANGES
)
# The forms inet_aton accepts (and so getaddrinfo): 127.1, 2130706433, 0x7f000001, 0177.0.0.1.
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]{1,64}")


class DestinationRefused(Exception):
    """The destination is not one this service may connect to (nothing was sent)."""

    def __init__(self, host: str, reason: str, address: IPAddress | None = None) -> None:
        where = f"{host} ({address})" if address is not None and str(address) != host else host
        super().__init__(f"destination {where} refused: {reason}")
        self.host = host
        self.address = address
        self.reason = reason


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP literal stands for, in any form a
    resolver accepts (dotted, short, decimal, hex, octal, bracketed IPv6)."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(text) and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


class AddressPolicy:
    """Which addresses a connection may reach: everything globally reachable
    that is in no blocked range, plus the ``allowed`` networks."""

    def __init__(self, allowed: Iterable[Network] = ()) -> None:
        self.allowed = tuple(allowed)

    @classmethod
    def from_setting(cls, cidrs: str) -> AddressPolicy:
        return cls(
            ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(",") if c.strip()
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when it may be reached."""
        if any(address in net for net in self.allowed if net.version == address.version):
            return None
        for net, reason in _BLOCKED:
            if net.version == address.version and address in net:
                return reason
        if not address.is_global:
            return "not globally reachable"
        return None

    def check_url(self, url: str) -> None:
        """Refuse a URL before any resolution: scheme, credentials, IP literals."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DestinationRefused(url[:100], "only http and https URLs are allowed")
        if parts.username is not None or parts.password is not None:
            raise DestinationRefused(parts.hostname or "?", "credentials in the URL are refused")
        host = parts.hostname
        if not host:
            raise DestinationRefused(url[:100], "the URL has no host")
        address = literal_address(host)
        if address is not None:
            reason = self.refusal(address)
            if reason is not None:
                raise DestinationRefused(host, reason, address)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (A and AAAA)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked one: a name
    with one blocked answer among good ones is refused whole (DNS rebinding
    would otherwise pick the blocked one on a later connection)."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        # Makes the connections once an address passed (tests wrap it to watch).
        self.inner: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = literal_address(host)
        try:
            async with asyncio.timeout(timeout):
                addresses = [literal] if literal is not None else await self.resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason is not None:
                raise DestinationRefused(host, reason, address)
        last: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport on a connection pool whose every new connection
    goes through GuardedBackend. No proxy from the environment: a proxy would
    connect to an address this policy never saw."""

    def __init__(self, backend: GuardedBackend, **pool: Any) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx 0.28 offers no public way to pass a network backend; the pool
        # is replaced whole, with httpcore's public constructor.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=backend,
            retries=0,
            **pool,
        )
