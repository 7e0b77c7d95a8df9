"""`ddpm_hf.training.optim`: the learning-rate schedules (diffusers' names and values) and the paper's Adam."""

import pytest
import torch
from diffusers.optimization import get_scheduler

from ddpm_hf.training.optim import LR_SCHEDULES, learning_rate, make_optimizer


def test_the_papers_schedule_is_linear_warmup_then_constant():
    lr = [learning_rate("constant_with_warmup", s, 2e-4, 5000, 800_000) for s in (0, 2500, 5000, 9999)]
    assert lr == [0.0, 1e-4, 2e-4, 2e-4]
    assert learning_rate("constant_with_warmup", 0, 2e-4, 0, 10) == 2e-4


@pytest.mark.parametrize("name", LR_SCHEDULES)
def test_schedules_give_diffusers_values_at_every_step(name):
    """diffusers' scheduler is stepped once per optimizer step; ours is a pure function of the step (exact resume)."""
    base, warmup, total = 3e-4, 7, 40
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    theirs = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    for step in range(total + 5):  # past the end too
        assert learning_rate(name, step, base, warmup, total) == pytest.approx(
            optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15
        ), step
        optimizer.step()
        theirs.step()


def test_cpu_optimizer_is_fused_and_steps_like_plain_adam():
    """The fast optimizer on CPU is one fused kernel, and its updates are the paper's Adam (no weight decay)."""
    torch.manual_seed(0)
    ours = [torch.randn(64, 32, requires_grad=True), torch.randn(32, requires_grad=True)]
    plain = [p.detach().clone().requires_grad_() for p in ours]
    fast = make_optimizer(ours, 2e-4, (0.9, 0.999), 1e-8, torch.device("cpu"))
    slow = torch.optim.Adam(plain, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    assert fast.defaults["fused"] and fast.defaults["weight_decay"] == 0 and type(fast) is torch.optim.Adam
    for _ in range(3):
        grads = [torch.randn_like(p) for p in ours]
        for params, opt in ((ours, fast), (plain, slow)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_weight_decay_means_adamw_as_in_diffusers_script():
    params = [torch.randn(4, requires_grad=True)]
    optimizer = make_optimizer(params, 1e-4, (0.9, 0.999), 1e-8, torch.device("cpu"), weight_decay=1e-6)
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["weight_decay"] == 1e-6
