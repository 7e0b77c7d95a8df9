"""What the library says while it works: messages through `logging`, and progress bars.

Messages go to the library's root logger `ddpm_hf`, configured as diffusers configures its own
(`diffusers.utils.logging`): a handler of its own on standard error, no propagation to the root logger, a default
level that `DDPM_HF_VERBOSITY` (debug, info, warning, error, critical) or `set_verbosity_*()` changes. The default
is INFO, not diffusers' WARNING: the library's messages are what a run says about itself (the split of the batch,
what was resumed, where a stopped run resumes), wanted by default whether a script or a notebook runs it;
`DDPM_HF_VERBOSITY=warning` keeps only what may not be what was asked for (damaged files passed over, settings that
changed on resuming, a stop).

Under `accelerate launch` (or torchrun) only the main process speaks and shows bars, so that N processes do not say
everything N times; a message that concerns each process asks for all of them with `extra=EVERY_PROCESS`.

Progress bars are tqdm's, made by `progress_bar` (or `track`, for loops that take a `Progress` argument), shown on
the main process unless `disable_progress_bar()` or `DDPM_HF_DISABLE_PROGRESS_BARS=1` switched them all off.
Messages are written above a live bar rather than into it. A command's result (what a user pipes) is not a message:
`write_result` puts it on standard output.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

from .errors import InputError

ROOT = "ddpm_hf"
VERBOSITY_VARIABLE = "DDPM_HF_VERBOSITY"
PROGRESS_BARS_VARIABLE = "DDPM_HF_DISABLE_PROGRESS_BARS"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
DEFAULT_LEVEL = logging.INFO
# `logger.warning(message, extra=EVERY_PROCESS)`: said by every process, not only the main one.
EVERY_PROCESS = {"main_process_only": False}

Progress = bool | Callable[[Iterable], Iterable]
_Item = TypeVar("_Item")

_lock = threading.Lock()
_handler: logging.Handler | None = None
_bars_enabled = os.environ.get(PROGRESS_BARS_VARIABLE, "").strip().lower() not in {"1", "true", "yes", "on"}


def is_main_process() -> bool:
    """Whether this process is the one that speaks: Accelerate's main process once its state exists, otherwise the
    one with `RANK` (or, without it, `LOCAL_RANK`) 0 or unset, as launchers set them before any state exists."""
    state = sys.modules.get("accelerate.state")  # not imported: no Accelerate state can exist yet
    if state is not None and state.PartialState._shared_state != {}:
        return state.PartialState().is_main_process
    for variable in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit():
            return int(value) == 0
    return True


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "main_process_only", True) or is_main_process()


class _StderrAboveBars(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment, not the one at import (pytest's capture, a redirected stream), and
    through `tqdm.write`, which clears live bars and draws them again under the message."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        if stream is None:  # pythonw: nowhere to write
            return
        try:
            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


_filter = _MainProcessOnly()


def _default_level() -> int:
    name = os.environ.get(VERBOSITY_VARIABLE, "").strip().lower()
    if not name:
        return DEFAULT_LEVEL
    if name not in LEVELS:
        logging.getLogger().warning(
            f"Unknown option {VERBOSITY_VARIABLE}={name}, has to be one of: {', '.join(LEVELS)}"
        )
        return DEFAULT_LEVEL
    return LEVELS[name]


def _root_logger() -> logging.Logger:
    """The library's root logger, given its handler, level and filter the first time."""
    global _handler
    root = logging.getLogger(ROOT)
    with _lock:
        if _handler is None:
            _handler = _StderrAboveBars()
            root.addHandler(_handler)
            root.setLevel(_default_level())
            root.propagate = False  # a user's root handler would print each message twice
            root.addFilter(_filter)
    return root


def get_logger(name: str = ROOT) -> logging.Logger:
    """The logger `name` (a module's `__name__`, under `ddpm_hf`), whose records only the main process emits."""
    if name != ROOT and not name.startswith(ROOT + "."):
        # Elsewhere, its records would miss the library's handler and level, and INFO would vanish unsaid.
        raise InputError(f"{name!r} is not under the library's root logger {ROOT!r}")
    _root_logger()
    logger = logging.getLogger(name)
    # Filters run where a record is made, not on the loggers it propagates through: each logger has its own.
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger


def get_verbosity() -> int:
    """The level of the library's root logger (`logging.INFO` by default)."""
    return _root_logger().getEffectiveLevel()


def set_verbosity(level: int) -> None:
    """Set the level of the library's root logger: `logging.DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`."""
    _root_logger().setLevel(level)


def set_verbosity_debug() -> None:
    """Everything, debug messages included."""
    set_verbosity(logging.DEBUG)


def set_verbosity_info() -> None:
    """What a run says about itself, and warnings (the default)."""
    set_verbosity(logging.INFO)


def set_verbosity_warning() -> None:
    """Only what may not be what was asked for, and errors."""
    set_verbosity(logging.WARNING)


def set_verbosity_error() -> None:
    """Only errors."""
    set_verbosity(logging.ERROR)


def disable_default_handler() -> None:
    """Stop writing the library's messages to standard error (a handler of your own, `add_handler`, still gets
    them)."""
    _root_logger().removeHandler(_handler)


def enable_default_handler() -> None:
    """Write the library's messages to standard error again."""
    _root_logger().addHandler(_handler)


def enable_propagation() -> None:
    """Pass the library's messages on to the root logger too (`logging.basicConfig`'s handlers, pytest's `caplog`);
    `disable_default_handler()` then avoids seeing them twice."""
    _root_logger().propagate = True


def disable_propagation() -> None:
    """Keep the library's messages to its own handlers (the default)."""
    _root_logger().propagate = False


def is_progress_bar_enabled() -> bool:
    """Whether progress bars are shown (on the main process)."""
    return _bars_enabled


def enable_progress_bar() -> None:
    """Show progress bars again (on the main process)."""
    global _bars_enabled
    _bars_enabled = True


def disable_progress_bar() -> None:
    """Show no progress bar at all, the pipelines' included; diffusers' own bars (loading a pipeline) follow
    `diffusers.utils.logging.disable_progress_bar()`."""
    global _bars_enabled
    _bars_enabled = False


def progress_bar(
    iterable: Iterable[_Item] | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = True,
    disable: bool = False,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar (over `iterable`, or of `total` steps advanced with `update`), shown only on the main process and
    while bars are enabled; a hidden one takes the same calls and draws nothing. `kwargs` go to tqdm."""
    hidden = disable or not _bars_enabled or not is_main_process()
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=hidden, **kwargs)


def track(iterable: Iterable[_Item], progress: Progress) -> Iterable[_Item]:
    """Wrap a loop in a progress bar: `True` for one of `progress_bar`'s, `False` for none, or a callable such as a
    pipeline's `progress_bar`."""
    if callable(progress):
        return progress(iterable)
    return progress_bar(iterable, leave=False, disable=not progress)


def write_result(line: str) -> None:
    """A command's result (what a user pipes or redirects) on standard output, apart from the messages on standard
    error."""
    print(line, flush=True)
