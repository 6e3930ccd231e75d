"""The ``[networks]`` table: labelled CIDR lists that reduce a click's address to the
name of a known network (docs/redirect.md).

The labels shipped in ``tracker/clicks/networks.toml`` come first; a label in the file replaces
the shipped one of that name (``[]`` turns it off), any other label is added. A value is a
list of CIDRs or ``"file:PATH"``, a list with one CIDR at the start of each line (relative
to the configuration file), as Apple publishes its Private Relay egress ranges."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay.config.table import Table
from tracker.clicks.network import (
    IPNetwork,
    NetworkTable,
    build_table,
    read_network_list,
    shipped_networks,
)

# A label may carry its kind as a prefix ("scanner:acme_gateway"), which the classifier reads.
LABEL = re.compile(r"[a-z0-9_]+(?::[a-z0-9_]+)?")


def parse_networks(t: Table, base: Path) -> NetworkTable:
    shipped = Table(shipped_networks(), "", "tracker/clicks/networks.toml")
    labelled = {label: _cidrs(shipped, label, cidrs) for label, cidrs in shipped.rest().items()}
    for label, value in t.rest().items():
        if not LABEL.fullmatch(label):
            raise t.error(label, "a label is lower-case letters, digits and _, with an "
                                 "optional kind: prefix")
        labelled[label] = _cidrs(t, label, _texts(t, label, value, base))
    return build_table(labelled)


def _texts(t: Table, label: str, value: Any, base: Path) -> list[str]:
    if isinstance(value, str) and value.startswith("file:"):
        path = base / value[len("file:"):]
        try:
            return read_network_list(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise t.error(label, f"cannot read {path}: {exc}") from exc
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise t.error(label, 'must be a list of CIDRs or "file:PATH"')


def _cidrs(t: Table, label: str, texts: Sequence[str]) -> list[IPNetwork]:
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise t.error(f"{label}[{i}]", str(exc)) from exc
    return out
