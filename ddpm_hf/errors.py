"""The package's errors: one base, `DDPMError`, under which every error ddpm_hf raises on purpose sits.

Each subclass keeps a builtin base too, so `except ValueError` still catches a refused argument; a boundary (a script's
exit, the demo's status line) catches `DDPMError` alone to tell the package's refusals from bugs.
"""

from __future__ import annotations


class DDPMError(Exception):
    """Base of every error ddpm_hf raises on purpose: its message says what was refused or failed, and why."""


class InputError(DDPMError, ValueError):
    """A value given to the package (an argument, a setting, a field of the demo) that it refuses."""
