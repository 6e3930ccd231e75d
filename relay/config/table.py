"""Typed reading of one TOML table, with errors that name the file and the key.

Every key a table has must be read; what is left over is an unknown key and an error,
so that a misspelt setting never silently falls back to its default (config.example.toml)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file, key and reason."""


class Table:
    def __init__(self, data: dict[str, Any], path: str, file: str) -> None:
        self._data = dict(data)
        self.path = path
        self.file = file

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(name)}: {reason}")

    def has(self, name: str) -> bool:
        return name in self._data

    def get(self, name: str, kind: type[T], default: T = _MISSING) -> T:
        if name not in self._data:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        value = self._data.pop(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"must be {_kind_name(kind)}, not {_kind_name(type(value))}")
        return value

    def text(self, name: str, default: str = _MISSING, *, secret: bool = False) -> str:
        value = self.get(name, str, default)
        if secret:
            value = resolve_secret(value, self, name)
        if value == "" and default is _MISSING:
            raise self.error(name, "must not be empty")
        return value

    def positive(self, name: str, default: int = _MISSING) -> int:
        value = self.get(name, int, default)
        if value <= 0:
            raise self.error(name, f"must be a positive integer, not {value}")
        return value

    def positive_number(self, name: str, default: float = _MISSING) -> float:
        """A number greater than zero (an integer is taken as a float)."""
        value = self.get(name, float, default)
        if value <= 0:
            raise self.error(name, "must be positive")
        return value

    def strings(self, name: str, default: tuple[str, ...] = _MISSING) -> tuple[str, ...]:
        items = self.get(name, list, list(default) if default is not _MISSING else _MISSING)
        if not all(isinstance(i, str) for i in items):
            raise self.error(name, "must be a list of strings")
        return tuple(items)

    def table(self, name: str, *, required: bool = False) -> Table:
        data = self.get(name, dict, _MISSING if required else {})
        return Table(data, self.key(name), self.file)

    def tables(self, name: str) -> Iterator[Table]:
        items = self.get(name, list, [])
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(f"{name}[{i}]", "must be a table")
            yield Table(item, f"{self.key(name)}[{i}]", self.file)

    def rest(self) -> dict[str, Any]:
        """Take the keys not read yet (for a table whose keys another module checks)."""
        data, self._data = self._data, {}
        return data

    def done(self) -> None:
        if self._data:
            name = sorted(self._data)[0]
            raise self.error(name, "unknown key")


def resolve_secret(value: str, table: Table, name: str) -> str:
    """``env:NAME`` takes the secret from the environment variable NAME."""
    if not value.startswith("env:"):
        return value
    var = value[4:]
    resolved = os.environ.get(var)
    if not resolved:
        raise table.error(name, f"environment variable {var} is not set or empty")
    return resolved


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean (true or false)",
        list: "an array",
        dict: "a table",
    }.get(kind, kind.__name__)
