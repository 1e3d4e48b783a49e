"""`--set KEY=VALUE` overrides of training-config dataclasses, with type checking.

Values are parsed as JSON when they parse (`3`, `1e-3`, `true`, `[4, 8, 8]`, `null`), else taken
as plain strings (`soap`, `/data/well`), then coerced to the field's annotated type.

Nested keys: a config class may name mapping fields that collect `PREFIX.NAME=VALUE` keys in its
`NESTED_OVERRIDES` class attribute ({prefix: field}); the owner of each mapping validates it
(e.g. the rollout stage: `model.` -> `model_overrides`, `processor.` -> `processor_overrides`).
Without it, a `model_overrides` field collects `model.NAME` keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")
MODEL_PREFIX = "model."


class ConfigError(ValueError):
    """A bad configuration value; the message names the option and the valid choices."""


def parse_value(text: str) -> Any:
    """JSON if it parses, else the raw string (so `--set optimizer=soap` needs no quotes)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        if lowered in ("none", "null"):
            return None
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def split_assignment(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. --set lr=5e-4)")
    key, value = item.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    return key, value


def coerce(value: Any, tp: Any, name: str) -> Any:
    """`value` converted to the annotated type `tp` (int, float, bool, str, tuples, lists, ...)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: cannot be {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        return json.dumps(value) if not isinstance(value, int | float) else str(value)
    if origin in (tuple, list):
        if isinstance(value, str):  # `--set datasets=a,b` or `[a,b]` (unquoted) as a list
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{name}: expected {len(args)} values, got {value!r}")
            return tuple(coerce(v, a, name) for v, a in zip(value, args, strict=True))
        item = args[0] if args else Any
        out = [coerce(v, item, name) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def nested_fields(cls: type) -> dict[str, str]:
    """{prefix: mapping field} of the `PREFIX.NAME=VALUE` keys a config class collects."""
    nested = getattr(cls, "NESTED_OVERRIDES", None)
    if nested is not None:
        return dict(nested)
    names = {f.name for f in dataclasses.fields(cls)}
    return {MODEL_PREFIX: "model_overrides"} if "model_overrides" in names else {}


def apply_overrides(config: T, assignments: Iterable[str]) -> T:
    """A copy of dataclass `config` with `KEY=VALUE` assignments applied (validated types);
    `PREFIX.NAME=VALUE` keys go into the config's nested mappings (`nested_fields`)."""
    types_ = field_types(type(config))
    nested = nested_fields(type(config))
    maps = {name: dict(getattr(config, name) or {}) for name in nested.values()}
    changes: dict[str, Any] = {}
    for item in assignments:
        key, text = split_assignment(item)
        prefix = next((p for p in nested if key.startswith(p)), None)
        if prefix is not None:
            maps[nested[prefix]][key[len(prefix) :]] = parse_value(text)
            continue
        if key in maps:
            example = next(p for p, name in nested.items() if name == key)
            raise ConfigError(
                f"--set {key}: set its keys one by one, e.g. --set {example}KEY=VALUE"
            )
        if key not in types_:
            valid = sorted(k for k in types_ if k not in maps)
            valid += [f"{p}<{p[:-1]} config key>" for p in nested]
            raise ConfigError(
                f"--set {key}: unknown option for {type(config).__name__}; valid keys: "
                f"{', '.join(valid)}"
            )
        changes[key] = coerce(parse_value(text), types_[key], f"--set {key}")
    return dataclasses.replace(config, **changes, **maps)


def config_from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Rebuild a config dataclass from its JSON dict (e.g. a checkpoint's train_config)."""
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {cls.__name__} keys {unknown}; valid keys: {sorted(types_)}"
        )
    return cls(**{k: coerce(v, types_[k], f"{where}: {k}") for k, v in data.items()})
