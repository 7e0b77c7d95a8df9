"""Checkpoints that survive a kill: written under a temporary name, renamed when complete, checked before they are
resumed from, pruned oldest first."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from ..checks import error_chain
from ..data import REDEFINED_SPLITS
from ..errors import DDPMError, InputError, MissingFileError
from ..identity import IdentityMismatchError, ResultIdentity
from ..publish import publish
from ..reporting import get_logger
from .optim import learning_rate

logger = get_logger(__name__)

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"
CONFIG_FILE = "train_config.json"
DATA_KEY = "data"  # the images a run trains on (`ddpm_hf.identity.data_fingerprint`), beside its settings
# Settings that change what a checkpoint holds (the network's weights, the EMA): resuming with others cannot work.
STRUCTURE_KEYS = ("model", "model_config_name_or_path", "unet_config", "use_ema")


class CheckpointError(DDPMError, RuntimeError):
    """A checkpoint that cannot be written or read; the message names it and what is intact."""


def list_checkpoints(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first; half-written ones carry a `tmp-` prefix and are never listed."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def holds_run(folder: Path) -> str | None:
    """What makes `folder` a run's (its checkpoints or exported pipeline), in words; None if nothing.

    Settings alone (a run stopped before its first checkpoint, e.g. by an unreadable image) hold nothing a new
    run could lose or mix with its own: the same command, corrected, starts again there."""
    checkpoints = list_checkpoints(folder / "checkpoints") if (folder / "checkpoints").is_dir() else []
    found = ["model_index.json"] if (folder / "model_index.json").is_file() else []
    if checkpoints:
        found.append(", ".join(p.name for p in checkpoints))
    return ", ".join(found) or None


def verify_checkpoint(path: Path) -> None:
    """Raise `CheckpointError` naming the first unreadable file: a missing marker, a safetensors file shorter than
    its header says, or a torch zip archive whose records fail their CRC."""
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    for file in sorted(path.iterdir()):
        try:
            if file.suffix == ".safetensors":
                _check_safetensors(file)
            elif file.suffix in (".bin", ".pkl", ".pt") and zipfile.is_zipfile(file):
                with zipfile.ZipFile(file) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    raise InputError(f"record {bad} fails its CRC")
            elif file.suffix in (".bin", ".pkl", ".pt"):
                raise InputError("not a complete torch archive")
        except (OSError, ValueError, zipfile.BadZipFile, struct.error) as e:
            raise CheckpointError(f"{file} is unreadable ({e}): checkpoint {path.name} is damaged") from e


def _check_safetensors(file: Path) -> None:
    with open(file, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_size))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if file.stat().st_size < 8 + header_size + end:
        raise InputError(f"{file.stat().st_size} bytes, the header needs {8 + header_size + end}")


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
        raise MissingFileError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    return path


def latest_intact(checkpoint_dir: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes `verify_checkpoint` (a checkpoint is only "latest" if it can be read), and
    why each newer one was passed over."""
    skipped = []
    for path in reversed(list_checkpoints(checkpoint_dir)):
        try:
            verify_checkpoint(path)
            return path, skipped
        except CheckpointError as e:
            skipped.append(str(e))
    return None, skipped


def save_checkpoint(
    accelerator: Accelerator,
    checkpoint_dir: str | os.PathLike,
    step: int,
    limit: int | None,
    config: dict[str, Any] | None = None,
) -> Path:
    """`accelerator.save_state` (model, optimizer, RNG states, registered objects such as the EMA) and the run's
    config, atomically: a failed write (a full disk) leaves no partial folder and the previous checkpoints intact."""
    folder = Path(checkpoint_dir)
    final, tmp = folder / f"checkpoint-{step}", folder / f"tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing this step
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process and config is not None:
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=list))
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = list_checkpoints(folder)
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "there is no earlier checkpoint"
        cause = "the disk is full" if _disk_full(e, folder) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"could not write checkpoint-{step} in {folder}: {cause}; {kept}") from e
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The marker file is written last, inside the temporary folder; the rename publishes it all at once.
        (tmp / STATE_FILE).write_text(json.dumps({"step": step}))
        publish(tmp, final)
        if limit is not None:
            for old in list_checkpoints(folder)[:-limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _disk_full(error: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC anywhere in the error's chain, or torch's writer failing
    (it reports only "file write failed") with the disk nearly full."""
    chain = error_chain(error)
    if any(getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e) for e in chain):
        return True
    try:
        nearly_full = shutil.disk_usage(folder).free < 64 * 2**20
    except OSError:
        nearly_full = False
    return nearly_full and any("write failed" in str(e) for e in chain)


def load_checkpoint(accelerator: Accelerator, path: Path) -> int:
    """Restore everything `save_checkpoint` wrote and return the number of optimizer steps it had taken."""
    try:
        accelerator.load_state(str(path))
    except Exception as e:
        raise CheckpointError(f"could not resume from {path}: {type(e).__name__}: {e}") from e
    return int(json.loads((path / STATE_FILE).read_text())["step"])


def checkpoint_config(path: Path) -> dict[str, Any] | None:
    """The config a checkpoint was written with: its own copy, else the run folder's (checkpoints of 0.1)."""
    for candidate in (path / CONFIG_FILE, path.parent.parent / CONFIG_FILE):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The settings whose values differ between a checkpoint's config and this run's, as (saved, current)."""
    normal = lambda v: json.dumps(v, sort_keys=True, default=list)  # noqa: E731 - tuples and lists compare equal
    return {k: (saved[k], current[k]) for k in saved.keys() & current.keys() if normal(saved[k]) != normal(current[k])}


# Settings that resuming commonly changes (where to stop, what to write): not worth a note.
_RESUME_MAY_CHANGE = {
    "resume_from_checkpoint", "max_train_steps", "num_epochs", "output_dir", "push_to_hub", "hub_model_id",
    "hub_private_repo", "report_to", "logging_steps", "logging_dir", "checkpointing_steps", "checkpoints_total_limit",
    "save_images_steps", "save_images_epochs", "save_pipeline_steps", "save_model_epochs", "num_grid_images",
    "num_inference_steps", "dataloader_num_workers", "skip_bad_images", "resume_on_other_data", "overwrite_output_dir",
}  # fmt: skip


def resume(accelerator: Accelerator, checkpoint_dir: Path, choice: str, config: dict[str, Any]) -> int:
    """Restore the checkpoint `choice` names (`latest`, `checkpoint-N` or a path) for a run configured as `config`;
    return its step (0 when `latest` finds none yet). `latest` is the newest checkpoint that reads back whole:
    damaged newer ones are named and passed over. A checkpoint of another network is refused, naming the settings
    that differ."""
    if choice == "latest":
        found, skipped = latest_intact(checkpoint_dir)
        for reason in skipped:
            logger.warning(f"warning: {reason}; falling back to the one before it")
        if found is None and skipped:
            raise CheckpointError(f"no intact checkpoint in {checkpoint_dir}: " + "; ".join(skipped))
        if found is None:
            logger.info(f"no checkpoint in {checkpoint_dir} yet: starting from scratch")
            return 0
    else:
        found = resolve_checkpoint(checkpoint_dir, choice)
        verify_checkpoint(found)
    saved = checkpoint_config(found)
    check_data(found, saved, config)
    if saved is not None:
        saved, current = dict(saved), dict(config)
        saved.pop(DATA_KEY, None), current.pop(DATA_KEY, None)
        for settings in (saved, current):  # sample_size follows resolution (0.1 presets also set it in unet_config)
            settings["unet_config"] = {k: v for k, v in settings.get("unet_config", {}).items() if k != "sample_size"}
        differences = config_differences(saved, current)
        listed = lambda keys: "; ".join(f"{k}: {differences[k][0]!r} there, {differences[k][1]!r} here" for k in keys)  # noqa: E731
        structural = [k for k in STRUCTURE_KEYS if k in differences]
        if structural:
            raise InputError(
                f"{found} holds another network than this run builds ({listed(structural)}): resume with the "
                "checkpoint's settings (its train_config.json), or train into another --output_dir"
            )
        notable = [k for k in sorted(differences) if k not in _RESUME_MAY_CHANGE]
        if notable:
            logger.warning(f"note: resuming with settings that differ from {found.name}'s: {listed(notable)}")
    step = load_checkpoint(accelerator, found)
    if saved is not None and (jump := schedule_change(saved, config, step)):
        logger.warning(f"note: {jump}")
    set_aside_newer(accelerator, Path(checkpoint_dir), step)
    logger.info(f"resumed from {found} at step {step}")
    return step


def check_data(found: Path, saved: dict[str, Any] | None, config: dict[str, Any]) -> None:
    """Refuse to continue a checkpoint on other images than it was trained on (its next steps would not be its run's
    continuation), naming both, unless `resume_on_other_data`. A checkpoint saved before runs recorded their data's
    fingerprint is checked by what is known of it: the image count of a split redefined since."""
    current = config.get(DATA_KEY)
    if current is None:
        return
    recorded = (saved or {}).get(DATA_KEY)
    allowed = config.get("resume_on_other_data", False)
    if recorded is not None:
        made, wanted = ResultIdentity(data=recorded), ResultIdentity(data=current)
        if not made.differences(wanted):
            return
        message = (
            f"{found} was trained on {_data_said(recorded)}; this run's data is {_data_said(current)}: resume with "
            "the checkpoint's data (its train_config.json), or pass --resume_on_other_data to continue on this data"
        )
    else:
        redefined = REDEFINED_SPLITS.get((current.get("dataset"), current.get("split")))
        if redefined is None or redefined[1] == current["num_images"]:
            logger.warning(f"note: {found} does not record its training data; resuming on {_data_said(current)}")
            return
        version, count, now = redefined
        message = (
            f"{found} does not record its training data (saved before ddpm_hf recorded it), and {current['dataset']}'s "
            f"'{current['split']}' split changed in {version}: {count:,} images before, {current['num_images']:,} "
            f"now (this run's data). A run begun before {version} trained on the {count:,}: resume it with "
            f"--dataset_split {now}; to continue on this run's data (a run begun with {version} or later), pass "
            "--resume_on_other_data"
        )
    if not allowed:
        raise IdentityMismatchError(message)
    logger.info(f"note: resuming on other data, as asked: {message.split(':', 1)[0]}")


def _data_said(data: dict[str, Any]) -> str:
    where = f"{data.get('dataset')} ({data.get('split')})"
    return f"{data.get('num_images', '?'):,} images of {where}, sha256 {str(data.get('sha256', '?'))[:12]}"


def schedule_change(saved: dict[str, Any], current: dict[str, Any], step: int) -> str | None:
    """What the remaining steps' learning rate becomes when a resume changes it (a decay stretched over a larger
    --max_train_steps jumps back up), naming the settings that did it; None when the schedule carries on as it was."""
    keys = ("lr_scheduler", "learning_rate", "lr_warmup_steps", "max_train_steps")
    if any(k not in saved for k in keys):
        return None
    before, after = (
        learning_rate(c["lr_scheduler"], step, c["learning_rate"], c["lr_warmup_steps"], c["max_train_steps"])
        for c in (saved, current)
    )
    if before == after:
        return None
    changed = ", ".join(f"{k} {saved[k]!r} → {current[k]!r}" for k in keys if saved[k] != current[k])
    return (
        f"the learning rate at step {step} becomes {after:.3g} instead of the {before:.3g} the checkpoint's run "
        f"would use ({changed}; the {current['lr_scheduler']} schedule is computed over the new settings)"
    )


def set_aside_newer(accelerator: Accelerator, checkpoint_dir: Path, step: int) -> list[Path]:
    """Move the run folder's checkpoints newer than the resumed `step` (a rollback's abandoned branch) into
    `abandoned-<time>/`, so that pruning never deletes this run's own checkpoints for theirs and `latest` means this
    run's newest. Nothing is deleted; returns where they went."""
    newer = [p for p in list_checkpoints(checkpoint_dir) if int(_NAME.match(p.name).group(1)) > step]
    moved = []
    if newer and accelerator.is_main_process:
        aside = checkpoint_dir / f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}-from-step-{step}"
        aside.mkdir()
        for path in newer:
            moved.append(aside / path.name)
            os.replace(path, moved[-1])
        logger.warning(
            f"note: resuming at step {step} behind newer checkpoints ({', '.join(p.name for p in newer)}): moved "
            f"them to {aside} so that this run's checkpoints are kept and 'latest' means this run's newest"
        )
    accelerator.wait_for_everyone()
    return moved
