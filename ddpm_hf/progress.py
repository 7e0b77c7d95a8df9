"""Progress bars on long loops: a flag, or a callable such as a pipeline's `progress_bar`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from tqdm.auto import tqdm

Progress = bool | Callable[[Iterable], Iterable]
_Item = TypeVar("_Item")


def track(iterable: Iterable[_Item], progress: Progress) -> Iterable[_Item]:
    """Wrap a loop in a progress bar: `True` for tqdm, `False` for none, or a callable such as a pipeline's."""
    if callable(progress):
        return progress(iterable)
    return tqdm(iterable, disable=not progress, leave=False)
