"""The package's errors: one base, `DDPMError`, under which every error ddpm_hf raises on purpose sits.

Each subclass keeps a builtin base too, so `except ValueError` still catches a refused argument; a boundary (a script's
exit, the demo's status line) catches `DDPMError` alone to tell the package's refusals from bugs.
"""

from __future__ import annotations


class DDPMError(Exception):
    """Base of every error ddpm_hf raises on purpose: its message says what was refused or failed, and why."""


class InputError(DDPMError, ValueError):
    """A value given to the package (an argument, a setting, a field of the demo) that it refuses."""


class InputTypeError(DDPMError, TypeError):
    """A value of the wrong kind given to the package (a callback that is not callable, a string for a number)."""


class MissingFileError(DDPMError, FileNotFoundError):
    """A file or folder the package was pointed at that does not exist, or lacks what it needs."""


class MissingDependencyError(DDPMError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra that installs it."""


class OutputExistsError(DDPMError, FileExistsError):
    """An output folder that already holds something the job would replace: nothing is ever overwritten."""


class SetupError(DDPMError, RuntimeError):
    """The environment a job runs in is not what it needs (a launch whose processes did not all join, say)."""


class HubError(DDPMError, OSError):
    """The Hub could not give what was asked (a repo not found, no network, no access)."""
