"""Checkpoints that survive a kill: written under a temporary name, renamed when complete, pruned oldest first."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"


def list_checkpoints(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first; half-written ones carry a `tmp-` prefix and are never listed."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(checkpoint_dir: str | os.PathLike, choice: str) -> Path | None:
    """`latest` → the newest complete checkpoint (None if there is none yet); `checkpoint-N` → that one in
    `checkpoint_dir` (as diffusers' scripts name them); anything else → the folder at that path."""
    if choice == "latest":
        found = list_checkpoints(checkpoint_dir)
        return found[-1] if found else None
    path = Path(choice)
    if _NAME.match(choice) and not path.exists():
        path = Path(checkpoint_dir) / choice
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    return path


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: str | os.PathLike, step: int, limit: int | None) -> Path:
    """`accelerator.save_state` (model, optimizer, RNG states, registered objects such as the EMA), atomically."""
    folder = Path(checkpoint_dir)
    final, tmp = folder / f"checkpoint-{step}", folder / f"tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing this step
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The marker file is written last, inside the temporary folder; the rename publishes it all at once.
        (tmp / STATE_FILE).write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if limit is not None:
            for old in list_checkpoints(folder)[:-limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> int:
    """Restore everything `save_checkpoint` wrote and return the number of optimizer steps it had taken."""
    accelerator.load_state(str(path))
    return int(json.loads((path / STATE_FILE).read_text())["step"])
