"""The client address reduced to a network label and a keyed hash; X-Forwarded-For
believed only from trusted proxies; the [networks] configuration (docs/redirect.md)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from relay.config.load import ConfigError
from tests.conftest import base_settings, write_config
from tracker.clicks.network import (
    NetworkTable,
    address_hash,
    address_hasher,
    build_table,
    client_address,
    derive_hash_key,
    parse_address,
    shipped_networks,
)

ip = ipaddress.ip_address
net = ipaddress.ip_network
PROXIES = (net("10.0.0.0/8"), net("fd00::/8"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:51234", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # a dual-stack socket's view of IPv4
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        (None, None),
        ("999.1.1.1", None),
    ],
)
def test_parse_address(text: str | None, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # An untrusted peer: its X-Forwarded-For proves nothing.
        ("198.51.100.1", ["203.0.113.7"], "198.51.100.1"),
        # A trusted proxy: the right-most hop it did not add itself.
        ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", ["1.2.3.4, 203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", ["1.2.3.4", "203.0.113.7"], "203.0.113.7"),  # repeated headers
        # Several trusted proxies in a row are skipped.
        ("10.0.0.1", ["1.2.3.4, 203.0.113.7, 10.9.9.9, 10.8.8.8"], "203.0.113.7"),
        ("fd00::1", ["2001:db8::77, fd00::2"], "2001:db8::77"),
        # Only trusted hops: the left-most of them.
        ("10.0.0.1", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
        # Garbage where the client's address should be: stop at the last hop we can name.
        ("10.0.0.1", ["203.0.113.7, garbage"], "10.0.0.1"),
        ("10.0.0.1", ["garbage, 203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("::ffff:10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        (None, ["203.0.113.7"], None),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    found = client_address(peer, forwarded, PROXIES)
    assert (str(found) if found else None) == expected


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    assert client_address("10.0.0.1", ["203.0.113.7"], ()) == ip("10.0.0.1")


def test_most_specific_network_wins_then_first_listed() -> None:
    table = build_table({
        "cloud": [net("40.64.0.0/10"), net("2a01:100::/24")],
        "scanner": [net("40.107.0.0/16"), net("2a01:111:f400::/48")],
        "also_cloud": [net("40.64.0.0/10")],
    })
    assert table.label(ip("40.107.9.9")) == "scanner"
    assert table.label(ip("40.108.0.1")) == "cloud"
    assert table.label(ip("2a01:111:f400::1")) == "scanner"
    assert table.label(ip("2a01:1ff::1")) == "cloud"
    assert table.label(ip("192.0.2.1")) is None
    assert table.label(ip("2001:db8::1")) is None
    assert NetworkTable().label(ip("40.107.9.9")) is None


def test_shipped_networks_hold_exchange_online_protection() -> None:
    shipped = shipped_networks()
    assert set(shipped["microsoft_eop"]) == {
        "40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17",
        "2a01:111:f400::/48", "2a01:111:f403::/48",
    }
    assert {"aws", "gcp", "azure", "apple_private_relay"} <= set(shipped)


def test_address_hash_is_keyed_truncated_and_stable() -> None:
    key = address_hasher(derive_hash_key(None, "signing-secret-0123456789abcdef0123"))
    first = address_hash(key, ip("203.0.113.77"))
    assert first == address_hash(key, ip("203.0.113.77"))
    assert len(first) == 16 and int(first, 16) >= 0
    assert first != address_hash(key, ip("203.0.113.78"))
    other = address_hasher(derive_hash_key(None, "another-secret-0123456789abcdef"))
    assert first != address_hash(other, ip("203.0.113.77"))
    assert address_hash(key, None) != first


def test_configured_hash_key_replaces_the_derived_one() -> None:
    configured = "address-hash-key-0123456789abcdef0123"
    assert derive_hash_key(configured, "signing") == configured.encode()
    assert derive_hash_key(None, "signing") != derive_hash_key(None, "other")


def _config(tmp_path: Path, change: Any) -> Any:
    settings = base_settings(tmp_path, 2525)
    change(settings)
    return write_config(tmp_path / "c.toml", settings)


def test_networks_table_replaces_and_adds_labels(tmp_path: Path) -> None:
    (tmp_path / "relay.csv").write_text(
        "# Apple-style list\n172.224.224.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0::/45,GB,,,\n\n"
    )
    config = _config(tmp_path, lambda s: s.update(networks={
        "microsoft_eop": [],
        "apple_private_relay": "file:relay.csv",
        "scanner:acme_gateway": ["198.51.100.0/24"],
    }))
    assert config.networks.label(ip("40.107.1.1")) is None  # turned off
    assert config.networks.label(ip("172.224.224.9")) == "apple_private_relay"
    assert config.networks.label(ip("2a02:26f7:b3c1::9")) == "apple_private_relay"
    assert config.networks.label(ip("198.51.100.20")) == "scanner:acme_gateway"
    assert config.networks.label(ip("52.0.0.1")) == "aws"  # shipped, kept


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ({"aws": ["3.0.0.0/33"]}, "networks.aws[0]: "),
        ({"aws": "3.0.0.0/8"}, 'networks.aws: must be a list of CIDRs or "file:PATH"'),
        ({"aws": [3]}, "networks.aws: must be a list"),
        ({"Bad Label": []}, "networks.Bad Label: a label is"),
        ({"mine": "file:missing.csv"}, "networks.mine: cannot read"),
    ],
)
def test_bad_networks_name_the_key(tmp_path: Path, networks: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"c\.toml: ") as info:
        _config(tmp_path, lambda s: s.update(networks=networks))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("tracking", "message"),
    [
        ({"store_deadline_ms": 0}, "tracking.store_deadline_ms: must be a positive integer"),
        ({"address_hash_key": "short"}, "tracking.address_hash_key: must be at least 32"),
    ],
)
def test_bad_tracking_keys_name_the_key(
    tmp_path: Path, tracking: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, lambda s: s["tracking"].update(tracking))
    assert message in str(info.value)


def test_address_hash_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKRELAY_TEST_HASH_KEY", "hash-key-from-env-0123456789abcdef")
    config = _config(tmp_path, lambda s: s["tracking"].update(
        address_hash_key="env:CLICKRELAY_TEST_HASH_KEY"))
    expected = address_hasher(b"hash-key-from-env-0123456789abcdef")
    assert address_hash(config.tracking.address_hasher, ip("203.0.113.7")) == address_hash(
        expected, ip("203.0.113.7"))
    assert "hash-key-from-env" not in repr(config.tracking)
