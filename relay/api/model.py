"""What the API's shapes share: the base of request bodies, the base of response bodies,
and the one translation of a failed validation into the ``BadInput`` the API answers
with 422 (docs/api.md, Errors).

A request body is read strictly, as Lettermint's API reads it: no type is coerced (``"1"``
is not a number, ``"yes"`` not a boolean), a key the shape does not know is refused rather
than ignored, and ``null`` stands for a field left out. A problem names the full path of
the field (``to[1]``, ``messages[2].attachments[0].content``); only the first problem is
answered (an unknown field before anything else), in one field error as before."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from relay.errors import BadInput

T = TypeVar("T")


class Body(BaseModel):
    """A request body. ``unknown_hint`` is said along with an unknown field's name."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    unknown_hint: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_and_given(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # refused as not an object
        names = {field.alias or name for name, field in cls.model_fields.items()}
        unknown = sorted(key for key in data if key not in names)
        if unknown:
            hint = f" ({cls.unknown_hint})" if cls.unknown_hint else ""
            raise PydanticCustomError("extra_forbidden", "{reason}",
                                      {"reason": f"unknown field{hint}", "at": unknown[0]})
        return {key: value for key, value in data.items() if value is not None}


class Shape(BaseModel):
    """A response body: every field is there, ``null`` when it has no value, unless the
    field says otherwise (``RouteData.statistics``)."""

    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True)
class Unsupported:
    """A field of Lettermint's shape that clickrelay cannot honour: refused with its
    reason when given a value rather than silently ignored, since ignoring it would do
    something else than was asked. ``empty`` is a value that asks for nothing either."""

    reason: str
    empty: tuple[Any, ...] = ()

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self._refuse)

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "null", "description": self.reason}

    def _refuse(self, value: Any) -> Any:
        if value in self.empty:
            return value
        raise invalid(self.reason)


def invalid(reason: str, at: str | None = None) -> PydanticCustomError:
    """A validator's refusal; ``at`` names the member at fault when a validator of a whole
    object or map finds it (``html`` of a send request, ``Date`` of its headers)."""
    context = {"reason": reason} if at is None else {"reason": reason, "at": at}
    return PydanticCustomError("invalid", "{reason}", context)


def read(validate: Callable[[Any], T], data: Any, prefix: str = "") -> T:
    """``data`` validated into its shape; ``prefix`` is where the body sits in the request
    (``messages`` for a batch)."""
    try:
        return validate(data)
    except ValidationError as exc:
        raise bad_input(exc.errors(), prefix) from None


def bad_input(errors: list[ErrorDetails], prefix: str = "") -> BadInput:
    first = min(errors, key=_rank)  # min keeps the first of equals: pydantic's field order
    where = field_path(prefix, first)
    if where:
        return BadInput(where, f"{where}: {reason(first)}")
    return BadInput("body", f"the request body {reason(first)}")


def _rank(error: ErrorDetails) -> tuple[int, int]:
    return (0, len(error["loc"])) if error["type"] == "extra_forbidden" else (1, 0)


def field_path(prefix: str, error: ErrorDetails) -> str:
    """``('messages', 2, 'to', 0)`` as ``messages[2].to[0]``; a map's key error names the
    key (``headers.X Y``); a validator's ``at`` names the member."""
    path = prefix
    at = error.get("ctx", {}).get("at")
    for part in (*error["loc"], *([at] if at is not None else [])):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":
            path += f".{part}" if path else str(part)
    return path


def reason(error: ErrorDetails) -> str:
    """What is wrong, in the words clickrelay has always used."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if "reason" in ctx:
        return str(ctx["reason"])
    words = {
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "string_type": f"must be a string, not {kind_of(value)}",
        "bool_type": f"must be true or false, not {kind_of(value)}",
        "list_type": f"must be an array, not {kind_of(value)}",
        "dict_type": f"must be an object, not {kind_of(value)}",
        "model_type": f"must be an object, not {kind_of(value)}",
        "string_too_short": "must not be empty",
        "string_too_long": f"longer than {ctx.get('max_length')} characters",
        "too_short": _too_short(ctx),
        "too_long": f"at most {ctx.get('max_length')} entries, not {ctx.get('actual_length')}",
    }
    return words.get(kind, error["msg"])


def _too_short(ctx: dict[str, Any]) -> str:
    if ctx.get("min_length") == 1:
        return "must not be empty"
    return f"at least {ctx.get('min_length')} entries, not {ctx.get('actual_length')}"


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean", int: "a number", float: "a number", str: "a string",
        list: "an array", dict: "an object",
    }.get(type(value), type(value).__name__)
