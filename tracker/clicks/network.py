"""The client's address, reduced before anything is stored (docs/redirect.md).

A click keeps two things of the address it came from: the label of a known network
(scanner, cloud, privacy proxy; configurable CIDR lists) and a keyed hash that lets the
classifier see the same address again without knowing it. The raw address is never
written anywhere. ``X-Forwarded-For`` is believed only from ``http.trusted_proxies``."""

from __future__ import annotations

import hmac
import ipaddress
import socket
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from functools import _lru_cache_wrapper

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ADDRESS_HASH_BYTES = 8  # 64 bits: enough to tell addresses apart, little to go on
ADDRESS_CACHE_SIZE = 4096  # addresses whose reduction is remembered (per configuration)
_HASH_KEY_CONTEXT = b"clickrelay address hash v1"


def _compile(
    labelled: Iterable[tuple[str, Iterable[IPNetwork]]], version: int
) -> tuple[tuple[int, int, dict[int, str]], ...]:
    """Per prefix length, longest first: the network's leading bits → label. A lookup
    then costs one shift and one dict probe per distinct prefix length."""
    bits = 32 if version == 4 else 128
    by_length: dict[int, dict[int, str]] = {}
    for label, networks in labelled:
        for net in networks:
            if net.version == version:
                key = int(net.network_address) >> (bits - net.prefixlen)
                by_length.setdefault(net.prefixlen, {}).setdefault(key, label)
    return tuple((bits - n, n, by_length[n]) for n in sorted(by_length, reverse=True))


@dataclass(frozen=True)
class NetworkTable:
    """Labelled networks; ``label`` finds the most specific one holding an address (on a
    tie, the label listed first)."""

    labels: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = ()
    _v4: tuple[tuple[int, int, dict[int, str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _v6: tuple[tuple[int, int, dict[int, str]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_v4", _compile(self.labels, 4))
        object.__setattr__(self, "_v6", _compile(self.labels, 6))

    def label(self, address: IPAddress) -> str | None:
        value = int(address)
        for shift, _, table in self._v4 if address.version == 4 else self._v6:
            found = table.get(value >> shift)
            if found is not None:
                return found
        return None


def shipped_networks() -> dict[str, list[str]]:
    """The labels shipped in ``tracker/clicks/networks.toml``, as CIDR texts."""
    text = resources.files("tracker.clicks").joinpath("networks.toml").read_text(encoding="utf-8")
    return {label: list(cidrs) for label, cidrs in tomllib.loads(text).items()}


def read_network_list(text: str) -> list[str]:
    """The CIDRs of a list file: the first comma-separated field of each line, blank
    lines and ``#`` comments skipped (the shape of Apple's egress-ip-ranges.csv)."""
    out = []
    for line in text.splitlines():
        first = line.split(",", 1)[0].strip()
        if first and not first.startswith("#"):
            out.append(first)
    return out


def parse_address(text: str | None) -> IPAddress | None:
    """An address as a peer or a proxy reports it: bare, ``[v6]:port`` or ``v4:port``;
    an IPv4-mapped IPv6 address becomes the IPv4 address. None if it is not one."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    address: IPAddress
    try:  # inet_pton is four times faster than ipaddress's own parser
        if ":" in text:
            address = ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
        else:
            address = ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    # A zone index (fe80::1%eth0), not an address at all, or a forwarded hop holding a
    # byte that is not UTF-8 (kept by the HTTP parser as a surrogate).
    except (OSError, UnicodeEncodeError):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The address the click came from. ``X-Forwarded-For`` counts only when the peer is
    a trusted proxy; then the right-most hop that is not a trusted proxy is the client
    (everything left of it was written by the client and proves nothing)."""
    address = parse_address(peer)
    if address is None or not forwarded_for or not _within(address, trusted):
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            break  # a trusted proxy passed on garbage: stop at the last hop we can name
        address = hop_address
        if not _within(address, trusted):
            break
    return address


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in net for net in networks)


def derive_hash_key(address_hash_key: str | None, first_signing_secret: str) -> bytes:
    """The key of the address hash: the configured one, or one derived from the first
    signing key (so that a rotation of signing keys also starts a new hash space)."""
    if address_hash_key:
        return address_hash_key.encode("utf-8")
    return hmac.digest(first_signing_secret.encode("utf-8"), _HASH_KEY_CONTEXT, "sha256")


def address_hasher(key: bytes) -> hmac.HMAC:
    """The keyed state ``address_hash`` starts from (made once per key)."""
    return hmac.new(key, None, "sha256")


def address_hash(hasher: hmac.HMAC, address: IPAddress | None) -> str:
    """HMAC-SHA256 of the packed address, truncated; an unknown address hashes as empty."""
    mac = hasher.copy()
    mac.update(address.packed if address is not None else b"")
    return mac.digest()[:ADDRESS_HASH_BYTES].hex()


def build_table(labelled: Mapping[str, Sequence[IPNetwork]]) -> NetworkTable:
    return NetworkTable(tuple((label, tuple(nets)) for label, nets in labelled.items()))


# reduce(peer, X-Forwarded-For values) → (network label, address hash), with cache_info()
AddressReducer: TypeAlias = "_lru_cache_wrapper[tuple[str | None, str]]"


def address_reducer(
    trusted: Sequence[IPNetwork],
    table: NetworkTable,
    hasher: hmac.HMAC,
    size: int = ADDRESS_CACHE_SIZE,
) -> AddressReducer:
    """What a click keeps of its address, for one configuration: the peer's address
    (or the forwarded one, from a trusted proxy) reduced to its network label and keyed
    hash. The last ``size`` answers are remembered, in memory only: an address that
    clicks again (a scanner, a mail gateway, a household behind one router) then costs a
    dictionary look-up instead of parsing, the table walk and an HMAC. Made anew with
    each configuration, since the proxies, the table and the key may change."""
    trusted = tuple(trusted)

    def reduce(peer: str | None, forwarded_for: tuple[str, ...]) -> tuple[str | None, str]:
        address = client_address(peer, forwarded_for, trusted)
        label = table.label(address) if address is not None else None
        return label, address_hash(hasher, address)

    return lru_cache(maxsize=size)(reduce)
