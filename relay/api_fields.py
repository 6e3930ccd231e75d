"""Typed reading of one JSON object of an API request, with errors naming the field.

The API's counterpart of ``configtable.Table``: every accessor checks the type, and a
problem is a ``BadInput`` whose field is the full path (``messages[2].settings.track_clicks``),
which the API answers with 422 and the SDKs show as the field error (DESIGN §8)."""

from __future__ import annotations

from typing import Any

from relay.errors import BadInput


class Fields:
    def __init__(self, data: Any, prefix: str = "") -> None:
        if not isinstance(data, dict):
            where = prefix or "body"
            raise BadInput(where, f"{prefix or 'the request body'} must be a JSON object")
        self._data: dict[str, Any] = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, reason: str) -> BadInput:
        return BadInput(self.name(key), f"{self.name(key)}: {reason}")

    def present(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> Any:
        return self._data.get(key)

    def only(self, allowed: frozenset[str], hint: str = "") -> None:
        unknown = sorted(k for k in self._data if k not in allowed)
        if unknown:
            raise self.error(unknown[0], "unknown field" + (f" ({hint})" if hint else ""))

    def required_str(self, key: str, *, allow_empty: bool = False) -> str:
        value = self._data.get(key)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        if not allow_empty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def optional_str(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        return value

    def optional_bool(self, key: str) -> bool | None:
        value = self._data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def optional_object(self, key: str) -> dict[str, Any] | None:
        value = self._data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.error(key, f"must be an object, not {_kind(value)}")
        return value

    def string_list(self, key: str, *, required: bool = False) -> list[str]:
        value = self._data.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return []
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of strings, not {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise BadInput(f"{self.name(key)}[{i}]",
                               f"{self.name(key)}[{i}]: must be a string, not {_kind(item)}")
        return value

    def string_map(self, key: str) -> dict[str, str]:
        value = self.optional_object(key) or {}
        for k, v in value.items():
            if not isinstance(v, str):
                where = f"{self.name(key)}.{k}"
                raise BadInput(where, f"{where}: must be a string, not {_kind(v)}")
        return value

    def object_list(self, key: str) -> list[Any]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"must be an array, not {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean", int: "a number", float: "a number", str: "a string",
        list: "an array", dict: "an object",
    }.get(type(value), type(value).__name__)
