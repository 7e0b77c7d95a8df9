"""Train with a callback that records, at every step, the gradient the optimizer is about to apply and the values the
loop logs: what runs that split one global batch differently (processes, accumulation) must agree on.

    python tests/support/record_training.py RECORD_DIR -- TRAIN_ARGS...
    accelerate launch --multi_gpu --num_processes 2 tests/support/record_training.py RECORD_DIR -- TRAIN_ARGS...

Each process writes RECORD_DIR/rank-{process_index}.pt: {"grads": one {name: gradient} per step, "logs": one dict
per `accelerator.log` call}. The gradients are read by a step pre-hook of the torch optimizer (after the backward,
DDP's all-reduce and gradient clipping; pass a huge --max_grad_norm to see them unclipped), the logs by wrapping
`accelerator.log` (the values are computed on every process; only the main one writes them to a tracker).
"""

import sys
from pathlib import Path

import torch

from ddpm_hf.training import Trainer, TrainerCallback, parse_args, train


class RecordTraining(TrainerCallback):
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.grads: list[dict[str, torch.Tensor]] = []
        self.logs: list[dict[str, float]] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        named = list(trainer.unet.named_parameters())  # the unwrapped network: the tensors DDP reduces into

        def record_gradients(optimizer, args, kwargs) -> None:
            self.grads.append({name: p.grad.detach().clone() for name, p in named})

        torch_optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # under AcceleratedOptimizer
        torch_optimizer.register_step_pre_hook(record_gradients)
        log = trainer.accelerator.log

        def recording_log(values: dict, step: int | None = None, **kwargs) -> None:
            self.logs.append({"step": step, **values})
            log(values, step=step, **kwargs)

        trainer.accelerator.log = recording_log

    def on_train_end(self, trainer: Trainer) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"grads": self.grads, "logs": self.logs}
        torch.save(record, self.folder / f"rank-{trainer.accelerator.process_index}.pt")


if __name__ == "__main__":
    record_dir, train_args = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    train(parse_args(train_args), [RecordTraining(record_dir)])
