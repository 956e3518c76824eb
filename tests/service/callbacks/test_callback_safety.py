"""Callback URLs: what is refused, what the allowlist lets through, and how bodies are signed."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from service.callbacks import (
    UnsafeCallbackURL,
    check_callback_url,
    signature,
    verify_signature,
)


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda _host, _port: list(addresses)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.0.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_refuse_callback_host_resolving_to_non_public_address(address: str) -> None:
    with pytest.raises(UnsafeCallbackURL, match="COMMENTGUARD_CALLBACK_ALLOWED_HOSTS"):
        check_callback_url("https://hooks.example.com/x", [], resolver=fixed(address))


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    ],
)
def test_refuse_an_ipv6_address_that_embeds_a_private_ipv4_one(address: str) -> None:
    with pytest.raises(UnsafeCallbackURL, match="COMMENTGUARD_CALLBACK_ALLOWED_HOSTS"):
        check_callback_url("https://hooks.example.com/x", [], resolver=fixed(address))
    literal = f"http://[{address}]/hook"  # an address in the URL itself is checked the same
    with pytest.raises(UnsafeCallbackURL):
        check_callback_url(literal, [])


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d822", "2002:5db8:d822::1"])
def test_accept_an_ipv6_address_that_embeds_a_public_ipv4_one(address: str) -> None:
    # 93.184.216.34 behind NAT64 or 6to4 is as public as 93.184.216.34.
    target = check_callback_url("https://x.example/", [], resolver=fixed(address))
    assert target.address == address


def test_refuse_host_when_any_address_is_private() -> None:
    with pytest.raises(UnsafeCallbackURL):
        check_callback_url("https://x.example/", [], resolver=fixed("93.184.216.34", "10.0.0.1"))


def test_accept_public_address_and_pin_it() -> None:
    target = check_callback_url(
        "https://x.example:8443/cb?a=1", [], resolver=fixed("93.184.216.34")
    )
    assert (target.host, target.port, target.address) == ("x.example", 8443, "93.184.216.34")


@pytest.mark.parametrize("url", ["ftp://x.example/", "file:///etc/passwd", "gopher://x", "//x"])
def test_refuse_non_http_scheme(url: str) -> None:
    with pytest.raises(UnsafeCallbackURL, match="http"):
        check_callback_url(url, [], resolver=fixed("93.184.216.34"))


def test_refuse_unresolvable_host() -> None:
    def fail(_host: str, _port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(UnsafeCallbackURL, match="does not resolve"):
        check_callback_url("http://nowhere.invalid/", [], resolver=fail)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:9000/cb", ["localhost"]),
        ("http://localhost:9000/cb", ["localhost:9000"]),
        ("http://127.0.0.1:8080/cb", ["127.0.0.1:8080"]),
        ("http://[::1]:8080/cb", ["[::1]:8080"]),
        ("http://HOOKS.internal/cb", ["hooks.internal"]),
    ],
)
def test_accept_allowlisted_host(url: str, allowed: list[str]) -> None:
    target = check_callback_url(url, allowed, resolver=fixed("10.0.0.1"))
    assert target.address is None  # connect by name: the operator vouched for it


def test_refuse_allowlisted_host_on_another_port() -> None:
    with pytest.raises(UnsafeCallbackURL):
        check_callback_url("http://127.0.0.1:22/", ["127.0.0.1:8080"])


def test_sign_body_as_documented() -> None:
    body = b'{"id":"x"}'
    header = signature("s3cret", 1700000000, body)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_signature_rejects_tampering_and_old_timestamps() -> None:
    body = b'{"id":"x"}'
    now = int(time.time())
    assert verify_signature("k", signature("k", now, body), body)
    assert not verify_signature("k", signature("k", now, body), body + b" ")
    assert not verify_signature("other", signature("k", now, body), body)
    assert not verify_signature("k", signature("k", now - 3600, body), body)
    assert not verify_signature("k", "garbage", body)
