"""Publishing by rename: a file or folder is written whole under a temporary name beside its final one, then renamed
into place in one step, so a reader (a resumed run, another process, a crash's survivor) finds all of it or none.
Checkpoints, evaluation shards and reports, exported pipelines and reference statistics are all published so."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def publish(staged: str | os.PathLike, final: str | os.PathLike, *, replace: bool = True) -> bool:
    """Rename `staged` (a whole file or folder, on the same file system) to `final` in one step.

    `replace=True`: an existing `final` is superseded (a folder is removed just before: the only moment a reader
    could find neither). `replace=False`: an existing `final` wins (another process published the same result)
    and `staged` is removed. Returns whether `staged` was published.
    """
    staged, final = Path(staged), Path(final)
    if final.exists() or final.is_symlink():
        if not replace:
            _remove(staged)
            return False
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
    try:
        os.replace(staged, final)  # a file replaces one atomically; a folder only takes a missing (or empty) name
    except OSError:
        if replace or not final.is_dir():
            raise
        _remove(staged)  # another process published the same folder between the check and the rename
        return False
    return True


def write_file(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` whole: under a temporary name in the same folder (made if missing), then
    `publish`ed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    publish(tmp, path)
