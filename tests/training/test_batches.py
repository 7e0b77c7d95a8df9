"""`ddpm_hf.training.batches`: what each step uses is a pure function of (seed, step), split over processes."""

import torch

from ddpm_hf.training.batches import StepBatchSampler, global_batch_indices, micro_slice, step_randomness


def test_global_batches_walk_seeded_epochs():
    seen = torch.cat([global_batch_indices(s, 10, 4, seed=0) for s in range(5)])  # 20 draws = 2 epochs of 10
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert torch.equal(global_batch_indices(3, 10, 4, seed=0), seen[12:16])
    assert not torch.equal(global_batch_indices(0, 10, 4, seed=1), seen[:4])


def test_micro_slices_cover_the_global_batch_once():
    # 2 processes × 2 accumulation steps × 3 images cover the global batch of 12 exactly once.
    parts = sorted(i for m in range(2) for p in range(2) for i in range(12)[micro_slice(m, p, 2, 3)])
    assert parts == list(range(12))


def test_sampler_yields_each_processes_share_from_the_start_step():
    """Over all processes, each step's micro-batches are that step's global batch, in order; resuming at step 2
    yields exactly what an uninterrupted sampler yields from there."""
    n, batch, accum, procs = 10, 8, 2, 2
    samplers = [StepBatchSampler(n, batch, accum, p, procs, seed=0, start_step=0, max_steps=4) for p in range(procs)]
    draws = [list(s) for s in samplers]
    assert all(len(d) == len(s) == 4 * accum for d, s in zip(draws, samplers, strict=True))
    for step in range(4):
        expected = global_batch_indices(step, n, batch, seed=0).tolist()
        got = [i for m in range(accum) for p in range(procs) for i in draws[p][step * accum + m]]
        assert got == expected
    resumed = StepBatchSampler(n, batch, accum, 1, procs, seed=0, start_step=2, max_steps=4)
    assert list(resumed) == draws[1][2 * accum :]


def test_step_randomness_depends_only_on_seed_and_step():
    a = step_randomness(5, 0, 6, (1, 4, 4), 1000, torch.device("cpu"))
    b = step_randomness(5, 0, 6, (1, 4, 4), 1000, torch.device("cpu"))
    c = step_randomness(6, 0, 6, (1, 4, 4), 1000, torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])
    t, noise, flip = a
    assert t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) < 1000
    assert noise.shape == (6, 1, 4, 4) and flip.dtype == torch.bool
