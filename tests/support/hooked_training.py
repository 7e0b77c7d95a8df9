"""Train in this process with a callback that kills it at a set point, to test what a crash leaves behind.

    python tests/support/hooked_training.py --kill_after_checkpoint 3 -- TRAIN_ARGS...
    python tests/support/hooked_training.py --kill_while_saving 6 -- TRAIN_ARGS...
    python tests/support/hooked_training.py --step_seconds 120 -- TRAIN_ARGS...

`--kill_after_checkpoint N`: SIGKILL right after checkpoint-N is complete. `--kill_while_saving N`: SIGKILL in the
middle of writing checkpoint-N, after a first (truncated) file is on disk; through Accelerate's documented
`register_save_state_pre_hook`. `--step_seconds S`: every step lasts at least S seconds more (a sleep at its end,
before the loop looks for a stop request), so a signal sent after step 1 lands mid-step on any machine.
"""

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ddpm_hf.training import Trainer, TrainerCallback, parse_args, train


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterCheckpoint(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        if trainer.step == self.step:
            die()


class FailWhileSaving(TrainerCallback):
    """While checkpoint-`step` is being written, once a first (truncated) file is on disk, call `fail`."""

    def __init__(self, step: int, fail: Callable[[], None], first_bytes: bytes = b"half") -> None:
        self.step, self.fail, self.first_bytes = step, fail, first_bytes

    def on_train_begin(self, trainer: Trainer) -> None:
        trainer.accelerator.register_save_state_pre_hook(self.before_save)

    def before_save(self, models: list, weights: list, output_dir: str) -> None:
        if output_dir.endswith(f"checkpoint-{self.step}"):
            Path(output_dir, "model.safetensors").write_bytes(self.first_bytes)
            self.fail()


class SlowSteps(TrainerCallback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer: Trainer) -> None:
        time.sleep(self.seconds)


if __name__ == "__main__":
    own, train_args = sys.argv[1 : sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1 :]
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill_after_checkpoint", type=int)
    parser.add_argument("--kill_while_saving", type=int)
    parser.add_argument("--step_seconds", type=float)
    args = parser.parse_args(own)
    callbacks = []
    if args.kill_after_checkpoint is not None:
        callbacks.append(KillAfterCheckpoint(args.kill_after_checkpoint))
    if args.kill_while_saving is not None:
        callbacks.append(FailWhileSaving(args.kill_while_saving, die))
    if args.step_seconds is not None:
        callbacks.append(SlowSteps(args.step_seconds))
    train(parse_args(train_args), callbacks)
