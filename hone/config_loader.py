"""Mappings (YAML recipes, ``key=value`` overrides) into frozen dataclasses, guided by their annotations.

A small walk over ``typing.get_type_hints`` rather than pydantic: every field's annotation says what
it accepts (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``Literal[...]``, ``tuple[X, ...]``,
a nested dataclass), and anything else raises :class:`ConfigError` with one line naming the dotted
path, the value and what would be accepted. ``hone.config`` holds the dataclasses themselves.

>>> show((1, 8)), describe(tuple[int, ...]), describe(Literal["a", "b"] | None)
('[1, 8]', 'a list of integers', "'a' or 'b' or null")
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Literal, Mapping, Union

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line for the user."""


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def optional_of(tp: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return None


def describe(tp: Any) -> str:
    if optional_of(tp) is not None:
        return f"{describe(optional_of(tp))} or null"
    if typing.get_origin(tp) is Literal:
        shown = [repr(a) for a in typing.get_args(tp)]
        return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    if typing.get_origin(tp) is tuple:
        return f"a list of {_NOUNS.get(typing.get_args(tp)[0], ('', 'mappings'))[1]}"
    return "true or false" if tp is bool else _NOUNS.get(tp, ("a mapping",))[0]


def convert(tp: Any, value: Any, where: str, root: type | None = None) -> Any:
    """``value`` as the annotation ``tp`` describes it, or a ConfigError naming ``where``."""
    t = optional_of(tp) or tp
    origin, args = typing.get_origin(t), typing.get_args(t)
    if value is None and t is not tp:
        return None
    if origin is Literal and isinstance(value, str) and value in args:
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(convert(args[0], v, f"{where}[{i}]", root) for i, v in enumerate(value))
    if is_dataclass(t) and (value is None or isinstance(value, (t, Mapping))):  # None: all keys commented out
        return value if isinstance(value, t) else build(t, value or {}, where, root)
    if (t is bool and isinstance(value, bool)) or (t is str and isinstance(value, str)):
        return value
    if t is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if t is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)  # PyYAML reads 1e-5 (no dot) as a string; inf is allowed, nan is not
            if not math.isnan(number):
                return number
    raise ConfigError(f"{where}: expected {describe(tp)}, got {show(value)}")


def build(cls: type, data: Mapping, where: str, root: type | None = None) -> Any:
    """The dataclass ``cls`` from a mapping found at dotted path ``where`` of the dataclass ``root``
    (which lets an unknown key's message point at the section that has it)."""
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(unknown_key(cls, join(where, str(key)), root or cls))
    for f in fields(cls):
        if f.name not in data and f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{join(where, f.name)}: required, not set")
    kwargs = {key: convert(hints(cls)[key], value, join(where, key), root) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:  # the section's own checks, relative to it
        raise ConfigError(join(where, str(err))) from None


def unknown_key(cls: type, path: str, root: type) -> str:
    section, _, leaf = path.rpartition(".")
    names = sorted(f.name for f in fields(cls))
    guesses = [join(section, g) for g in difflib.get_close_matches(leaf, names, n=1)]
    guesses += [p for p in all_paths(root) if p.rpartition(".")[2] == leaf]  # right key, wrong section
    suggestion = f" did you mean '{guesses[0]}'?" if guesses else ""
    return f"unknown config key '{path}';{suggestion} expected one of: {', '.join(names)}"


@functools.cache
def all_paths(cls: type, prefix: str = "") -> tuple[str, ...]:
    paths: list[str] = []
    for name, tp in hints(cls).items():
        paths += [join(prefix, name), *(all_paths(tp, join(prefix, name)) if is_dataclass(tp) else ())]
    return tuple(paths)


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def show(value: Any) -> str:
    """A value as the user would write it, on one short line."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = " ".join((getattr(err, "problem", None) or str(err)).split())
    return f"invalid YAML at line {mark.line + 1}: {problem}" if mark else f"invalid YAML: {problem}"


# --- overrides: key=value on top of a recipe ------------------------------------------------------


def apply_override(root: type, data: dict, item: str) -> None:
    """Set ``data`` (a recipe mapping for the dataclass ``root``) as ``key.path=value`` says."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=1e-5")
    tp: Any = root
    *sections, leaf = key.split(".")
    for i, part in enumerate([*sections, leaf]):
        if not is_dataclass(tp):
            owner = ".".join(sections[:i])
            raise ConfigError(f"unknown config key '{key}': '{owner}' is a value, not a section")
        if part not in hints(tp):
            raise ConfigError(unknown_key(tp, ".".join(key.split(".")[: i + 1]), root))
        tp = hints(tp)[part]
    for part in sections:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[leaf] = parse_value(tp, text, item)


def parse_value(tp: Any, text: str, item: str) -> Any:
    """An override's text for a field of type ``tp``: strings stay verbatim, the rest is YAML.

    Lists of scalars may also be written without brackets: ``eval.pass_k=1,8``.
    """
    if optional_of(tp) is not None:
        if text.strip() in ("null", "~"):
            return None
        tp = optional_of(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str or (origin is Literal and all(isinstance(a, str) for a in args)):
        return text
    if origin is tuple and args[0] in _NOUNS and not text.lstrip().startswith("["):
        return [parse_value(args[0], t.strip(), item) for t in text.split(",")] if text.strip() else []
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: {yaml_problem(err)}") from None
