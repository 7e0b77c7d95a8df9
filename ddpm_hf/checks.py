"""Checks shared by the package: an integer in a range, one of a `Literal`'s values, and the chain of errors behind
a failure (to say why it failed)."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np

from .errors import InputError


def check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """`value` as an int if it is an integer (not a bool) in [low, high]; otherwise a ValueError that names it."""
    in_range = f"an integer ≥ {low}" if high is None else f"an integer in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be {in_range}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise InputError(f"{name} must be {in_range}, got {value}")
    return int(value)


def whole_number(name: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` as a person entered it (a number field's float, or text) as an int in [low, high]; otherwise an
    `InputError` saying what is allowed."""
    allowed = f"from {low} to {high}" if high is not None else f"at least {low}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name}: enter a whole number {allowed}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: {value!r} is not a number; enter a whole number {allowed}") from None
    if not number.is_integer() or number < low or (high is not None and number > high):
        raise InputError(f"{name} must be a whole number {allowed}, got {number:g}")
    return int(number)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (checked when the command line is read, before any work)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Any) -> Any:
    """`value` if it is one of `choices` (a `Literal[...]` type or a sequence); a ValueError listing them otherwise."""
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        raise InputError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def error_chain(error: BaseException) -> list[BaseException]:
    """The error and the errors it was raised from or while handling, outermost first (each once)."""
    chain = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and cause not in chain:
        chain.append(cause)
    return chain
