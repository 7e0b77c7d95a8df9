"""Settings as frozen dataclasses whose fields are command-line flags: one place states a setting's default and help,
and the scripts' flags are generated from it (`add_arguments`), so a flag can never drift from what it feeds.

    @dataclass(frozen=True)
    class Limits:
        max_batch_size: int = setting(64, "images per Sample job")

    add_arguments(parser, Limits)            # --max_batch_size N (default: 64)
    Limits(**pick(vars(parser.parse_args()), Limits))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any


def setting(default: Any, help: str, *aliases: str) -> Any:
    """A settings field: its default, its help line and any other spellings of its flag."""
    if isinstance(default, (dict, list)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"help": help, "aliases": aliases}
        )
    return dataclasses.field(default=default, metadata={"help": help, "aliases": aliases})


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
    `| None` forms."""
    args = typing.get_args(annotation)
    optional = (typing.get_origin(annotation) in (typing.Union, types.UnionType)) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else annotation
    base = typing.get_origin(base) or base
    if base is bool:
        return parse_bool, {"nargs": "?", "const": True, "metavar": "true|false"}  # a bare switch, or a value
    kind = {int: int, float: float, dict: json.loads}.get(base, str)
    return (_optional(kind) if optional else kind), {}


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
        parser.add_argument(
            f"--{f.name}",
            *f.metadata.get("aliases", ()),
            dest=f.name,
            type=kind,
            default=default,
            help=f"{f.metadata['help']} (default: %(default)s)",
            **extra,
        )


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def pick(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The entries of `values` (e.g. `vars(args)`) that are fields of the dataclass `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}
