"""Which images, timesteps, noise and flips each step uses: a pure function of (seed, step).

Because nothing here carries state, resuming at step N replays exactly what an uninterrupted run would have
seen, and splitting the global batch over processes or accumulation steps changes nothing but who computes
which slice — the property behind exact resume and 1 × B ≡ 2 × B/2 training.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from .config import TrainConfig


@lru_cache(maxsize=2)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def global_batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Dataset indices of step `step`'s global batch: seeded epoch permutations consumed in order."""
    indices, position = [], step * batch_size
    while sum(len(i) for i in indices) < batch_size:
        epoch, offset = divmod(position, num_examples)
        take = min(batch_size - sum(len(i) for i in indices), num_examples - offset)
        indices.append(_epoch_permutation(num_examples, seed, epoch)[offset : offset + take])
        position += take
    return torch.cat(indices)


def step_generator(seed: int, step: int, device: torch.device | str) -> torch.Generator:
    """The generator for step `step`'s timesteps, noise and flips, on the device that draws them."""
    return torch.Generator(device=device).manual_seed((seed << 32) + step)


def step_randomness(
    step: int, seed: int, batch_size: int, sample_shape: tuple[int, ...], num_timesteps: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """t ~ U{0..T-1}, ε ~ N(0, I) and horizontal-flip flags for the whole global batch (Algorithm 1)."""
    gen = step_generator(seed, step, device)
    t = torch.randint(0, num_timesteps, (batch_size,), generator=gen, device=device)
    noise = torch.randn((batch_size, *sample_shape), generator=gen, device=device)
    flip = torch.rand(batch_size, generator=gen, device=device) < 0.5
    return t, noise, flip


def micro_batch_size(batch_size: int, num_processes: int, accumulation: int) -> int:
    """Images per process per accumulation step: the global batch split evenly, or a ValueError saying why not."""
    if batch_size % (num_processes * accumulation):
        raise InputError(
            f"train_batch_size={batch_size} is not divisible by {num_processes} processes × {accumulation} "
            "accumulation steps (it is the global batch)"
        )
    return batch_size // (num_processes * accumulation)


def micro_slice(micro_step: int, process_index: int, num_processes: int, micro_batch: int) -> slice:
    """The part of the global batch that `process_index` computes in accumulation step `micro_step`."""
    start = (micro_step * num_processes + process_index) * micro_batch
    return slice(start, start + micro_batch)


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches of indices for steps `start_step`..`max_steps - 1`, in order."""

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        accumulation: int,
        process_index: int,
        num_processes: int,
        seed: int,
        start_step: int,
        max_steps: int,
    ) -> None:
        self.num_examples, self.batch_size, self.accumulation = num_examples, batch_size, accumulation
        self.process_index, self.num_processes, self.seed = process_index, num_processes, seed
        self.start_step, self.max_steps = start_step, max_steps
        self.micro_batch = batch_size // (accumulation * num_processes)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            indices = global_batch_indices(step, self.num_examples, self.batch_size, self.seed)
            for m in range(self.accumulation):
                yield indices[micro_slice(m, self.process_index, self.num_processes, self.micro_batch)].tolist()

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * self.accumulation


def collate_valid(items: list) -> tuple[torch.Tensor | None, torch.Tensor, list]:
    """Stack the readable images of a micro-batch; return them, their positions in it, and the skipped ones
    (`data.BadImage`: each file and why)."""
    keep = [i for i, x in enumerate(items) if isinstance(x, torch.Tensor)]
    images = torch.stack([items[i] for i in keep]) if keep else None
    return images, torch.tensor(keep, dtype=torch.long), [x for x in items if not isinstance(x, torch.Tensor)]


def step_loader(
    data: torch.utils.data.Dataset,
    cfg: TrainConfig,
    process_index: int,
    num_processes: int,
    start_step: int,
    num_workers: int = 0,
) -> Iterator:
    """This process's micro-batches `(images, kept positions, skipped images)` for steps `start_step` onwards."""
    sampler = StepBatchSampler(
        len(data),
        cfg.train_batch_size,
        cfg.gradient_accumulation_steps,
        process_index,
        num_processes,
        cfg.seed,
        start_step,
        cfg.max_train_steps,
    )
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=sampler,
        collate_fn=collate_valid,
        num_workers=num_workers,
        # Its own generator: the loader must not draw from the global RNG that dropout uses (exact resume).
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return iter(loader)
