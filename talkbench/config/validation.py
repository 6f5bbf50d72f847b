"""A setting's value checked against its annotation with pydantic v2, and a dataclass's annotations.

Booleans are strict (``flag=1`` is a mistake, not True), integers take integral floats and their
exponent spellings (``1e11``) and fit int64, numbers are fine where a string is expected; a wrong
value is a :class:`ConfigError` naming the key, the layer it came from and the expected type.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from talkbench.errors import ConfigError

# any integer setting fits int64 (PyTorch sizes, numpy): bigger ones are typos, refused by name
_INT64 = (-(2**63), 2**63 - 1)


def validate(value: Any, ann: Any, key: str, source: str) -> Any:
    """Check/convert ``value`` with pydantic against ``ann``; ConfigError naming the key and layer."""
    if value is None and not _allows_none(ann):
        raise ConfigError(f"{source}: '{key}' expects {describe(ann)}, got None (null is not allowed)")
    try:
        return adapter(_config_type(ann)).validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        why = f"{where}: {reason(err)}" if where else reason(err)
        raise ConfigError(f"{source}: '{key}' expects {describe(ann)}, got {value!r} ({why})") from None


def reason(err: Mapping[str, Any]) -> str:
    """One pydantic error's message on one line."""
    return " ".join(str(err["msg"]).split())


@functools.cache
def adapter(ann: Any) -> TypeAdapter:
    # numbers are fine where a string is expected (a YAML ``name: 123``); a config dict cannot be
    # given for a dataclass (it has its own), and those have no string fields to coerce at top level
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return TypeAdapter(ann)
    return TypeAdapter(ann, config=ConfigDict(coerce_numbers_to_str=True))


def _config_type(ann: Any) -> Any:
    """The annotation pydantic validates: booleans strict (``flag=1`` is a mistake, not True)."""
    if typing.get_origin(ann) is Annotated:  # bounds (Field(ge=..)) kept around the converted type
        base, *meta = typing.get_args(ann)
        if base is int:  # its own bounds replace the int64 one
            return Annotated[(int, BeforeValidator(_integral_text), *meta)]
        return Annotated[(_config_type(base), *meta)]
    if ann is bool:
        return Annotated[bool, Strict()]
    if ann is int:  # integral floats accepted (1e11, 1.0e+11: sizes are written so), fractions refused
        return Annotated[int, BeforeValidator(_integral_text), Field(ge=_INT64[0], le=_INT64[1])]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[tuple(_config_type(a) for a in args)]  # noqa: UP007 (built from a tuple)
    if origin in (tuple, list) and args:
        return origin[tuple(a if a is Ellipsis else _config_type(a) for a in args)]
    return ann


def _integral_text(value: Any) -> Any:
    """``"1e11"`` (YAML 1.1 reads an exponent without a dot as a string) -> 100000000000 when integral;
    anything else is left to pydantic's lax int (which takes the float 1.0e+11 and refuses 2.5)."""
    if isinstance(value, str) and any(c in value for c in ".eE"):
        try:
            number = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return value
        if number.is_finite() and number == number.to_integral_value():
            # the int64 bound refuses big ones by name; absurd exponents stay floats (no huge int)
            return int(number) if abs(number) < 10**100 else float(number)
    return value


def _allows_none(ann: Any) -> bool:
    if typing.get_origin(ann) is Annotated:
        return _allows_none(typing.get_args(ann)[0])
    if ann is Any or ann is None or ann is type(None):
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return type(None) in typing.get_args(ann)
    if origin is Literal:
        return None in typing.get_args(ann)
    return False


def describe(ann: Any) -> str:
    """An annotation as errors spell it: ``int >= 0, <= 4294967295``, ``one of 'val', 'last'``."""
    origin = typing.get_origin(ann)
    if origin is Annotated:  # int with bounds: "int >= 0, <= 4294967295"
        base, *meta = typing.get_args(ann)
        found = [c for m in meta for c in (m, *getattr(m, "metadata", ()))]  # FieldInfo keeps Ge/Le inside
        ops = ((">=", "ge"), ("<=", "le"))
        bounds = [f"{op} {getattr(c, a)}" for c in found for op, a in ops if hasattr(c, a)]
        return describe(base) + (" " + ", ".join(bounds) if bounds else "")
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(ann)))
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(describe(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "null"
    if isinstance(ann, type) and origin is None:
        return ann.__name__
    return str(ann).replace("typing.", "")


# -- dataclass annotations -----------------------------------------------------------------------
def dataclass_of(ann: Any) -> type | None:
    """The dataclass behind an annotation (``X`` or ``X | None``), else None."""
    if ann is None:
        return None
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return ann
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(ann):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None


def is_mapping_type(ann: Any) -> bool:
    return ann in (dict, Mapping) or typing.get_origin(ann) in (dict, Mapping)


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (string annotations resolved; unresolvable ones = Any)."""
    if cls not in _HINTS:
        hints = type_hints_of(cls)
        _HINTS[cls] = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
    return dict(_HINTS[cls])


def type_hints_of(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)  # keeps Annotated bounds
    except Exception:  # a forward reference we cannot resolve: accept any value there
        return {}
