"""The SSRF policy and the guarded backend, with no network at all: the inner
backend is a fake that records what it was asked to connect to."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore
import pytest

from queue_service.providers.ssrf import (
    AddressPolicy,
    DestinationRefused,
    GuardedBackend,
    IPAddress,
    literal_address,
)

BLOCKED_URLS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[::]/",
]


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_every_blocked_literal_form_is_refused_from_the_url_alone(url: str) -> None:
    with pytest.raises(DestinationRefused):
        AddressPolicy().check_url(url)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("example.com", None),
        ("deadbeef.example", None),
    ],
)
def test_host_literals_are_read_as_a_resolver_would(text: str, address: str | None) -> None:
    expected = ipaddress.ip_address(address) if address else None
    assert literal_address(text) == expected


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "http://user:pw@example.com/", "http:///x"],
)
def test_only_plain_http_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(DestinationRefused):
        AddressPolicy().check_url(url)


def test_public_addresses_pass_and_the_allow_list_opens_only_its_networks() -> None:
    policy = AddressPolicy.from_setting("127.0.0.1/32, 10.20.0.0/16")
    assert AddressPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert AddressPolicy().refusal(ipaddress.ip_address("2606:2800:220:1::1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback (127/8)"
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) == "private (10/8)"
    assert "metadata" in (policy.refusal(ipaddress.ip_address("169.254.169.254")) or "")


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Never connects: records the address it was asked for, then fails."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        raise httpcore.ConnectError("test backend never connects")

    async def sleep(self, seconds: float) -> None:
        return None


def guarded(answers: dict[str, list[str]]) -> tuple[GuardedBackend, RecordingBackend, list[str]]:
    resolved: list[str] = []

    async def resolver(host: str, port: int) -> Sequence[IPAddress]:
        resolved.append(host)
        return [ipaddress.ip_address(a) for a in answers[host]]

    backend = GuardedBackend(AddressPolicy(), resolver)
    inner = RecordingBackend()
    backend.inner = inner
    return backend, inner, resolved


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["127.0.0.1"], "loopback"),
        (["169.254.169.254"], "metadata"),
        (["10.0.0.1"], "private"),
        (["::1"], "IPv6 loopback"),
        (["::ffff:10.0.0.1"], "IPv4-mapped"),
        # One bad answer among good ones refuses the name whole (DNS rebinding).
        (["93.184.216.34", "192.168.1.1"], "private"),
    ],
)
async def test_a_name_resolving_to_a_blocked_address_is_refused_before_connecting(
    answers: list[str], reason: str
) -> None:
    backend, inner, _ = guarded({"hooks.example": answers})
    with pytest.raises(DestinationRefused, match=reason):
        await backend.connect_tcp("hooks.example", 443, timeout=1)
    assert inner.asked == []


async def test_an_ip_literal_is_checked_without_dns() -> None:
    backend, inner, resolved = guarded({})
    with pytest.raises(DestinationRefused):
        await backend.connect_tcp("169.254.169.254", 80, timeout=1)
    assert resolved == [] and inner.asked == []


async def test_a_public_name_connects_to_the_checked_address_not_the_name() -> None:
    backend, inner, _ = guarded({"hooks.example": ["93.184.216.34"]})
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("hooks.example", 443, timeout=1)
    assert inner.asked == ["93.184.216.34"]
