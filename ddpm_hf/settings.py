"""Settings as frozen dataclasses whose fields are command-line flags: one place states a setting's default and help,
and the scripts' flags are generated from it (`add_arguments`), so a flag can never drift from what it feeds.

    @dataclass(frozen=True)
    class Limits:
        max_batch_size: int = setting(64, "images per Sample job")
        kinds: tuple[str, ...] = setting(("a",), "which to run", choices=("a", "b"))

    add_arguments(parser, Limits)            # --max_batch_size N (default: 64), --kinds {a,b} [{a,b} ...]
    Limits(**pick(vars(parser.parse_args()), Limits))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any


def setting(default: Any, help: str, *aliases: str, choices: Sequence[Any] | None = None) -> Any:
    """A settings field: its default, its help line, any other spellings of its flag (e.g. "--old_name") and the
    values its flag accepts (`choices`; each value's, for a tuple field)."""
    metadata = {"help": help, "aliases": aliases, **({"choices": tuple(choices)} if choices is not None else {})}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_bool(text: str) -> bool:
    """An argparse type: true/false, yes/no or 1/0."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind: Any) -> Any:
    """An argparse type that also reads "none" as None (for settings that may be unset)."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _flag_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """The argparse type (and extra keywords) of a field's annotation: bool, int, float, str, dict (JSON), their
    `| None` forms, and tuples of one of these (`tuple[int, ...]`: one or more values)."""
    args = typing.get_args(annotation)
    optional = (typing.get_origin(annotation) in (typing.Union, types.UnionType)) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else annotation
    if _is_tuple(base):
        kind, _ = _flag_type(typing.get_args(base)[0] if typing.get_args(base) else str)
        return kind, {"nargs": "+"}
    base = typing.get_origin(base) or base
    if base is bool:
        return parse_bool, {"nargs": "?", "const": True, "metavar": "true|false"}  # a bare switch, or a value
    kind = {int: int, float: float, dict: json.loads}.get(base, str)
    return (_optional(kind) if optional else kind), {}


def _is_tuple(annotation: Any) -> bool:
    return (typing.get_origin(annotation) or annotation) is tuple


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    defaults: Any = None,
    skip: tuple[str, ...] = (),
) -> None:
    """A flag for every field of the dataclass `cls` (but `skip`), with its help and its default (from `defaults`,
    an instance, when given): `--name` and the field's aliases."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        kind, extra = _flag_type(hints[f.name])
        if kind is json.loads:
            default = json.dumps(default)
        if "choices" in f.metadata:
            extra["choices"] = f.metadata["choices"]
        # argparse would show a tuple default as "('a', 'b')"; it is typed as "a b"
        shown = " ".join(map(str, default)).replace("%", "%%") if isinstance(default, tuple) else "%(default)s"
        parser.add_argument(
            f"--{f.name}",
            *f.metadata.get("aliases", ()),
            dest=f.name,
            type=kind,
            default=default,
            help=f"{f.metadata['help'].replace('%', '%%')} (default: {shown})",
            **extra,
        )


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def pick(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The entries of `values` (e.g. `vars(args)`) that are fields of the dataclass `cls`; a tuple field's list
    (what a flag of several values parses to) as a tuple, so that the instance is hashable and compares equal to
    one made in Python."""
    names = {f.name for f in dataclasses.fields(cls)}
    picked = {k: v for k, v in values.items() if k in names}
    lists = [k for k, v in picked.items() if isinstance(v, list)]
    if lists:
        hints = typing.get_type_hints(cls)
        picked.update({k: tuple(picked[k]) for k in lists if _is_tuple(hints[k])})
    return picked
