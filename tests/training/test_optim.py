"""`ddpm_hf.training.optim`: the reference's learning-rate warm-up and the paper's Adam."""

import torch

from ddpm_hf.training.optim import make_optimizer, warmup_lr


def test_warmup_is_linear_then_constant():
    assert warmup_lr(0, 2e-4, 5000) == 0.0 and warmup_lr(2500, 2e-4, 5000) == 1e-4
    assert warmup_lr(5000, 2e-4, 5000) == warmup_lr(9999, 2e-4, 5000) == 2e-4
    assert warmup_lr(0, 2e-4, 0) == 2e-4


def test_cpu_optimizer_is_fused_and_steps_like_plain_adam():
    """The fast optimizer on CPU is one fused kernel, and its updates are the paper's Adam (no weight decay)."""
    torch.manual_seed(0)
    ours = [torch.randn(64, 32, requires_grad=True), torch.randn(32, requires_grad=True)]
    plain = [p.detach().clone().requires_grad_() for p in ours]
    fast = make_optimizer(ours, 2e-4, (0.9, 0.999), 1e-8, torch.device("cpu"))
    slow = torch.optim.Adam(plain, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    assert fast.defaults["fused"] and fast.defaults["weight_decay"] == 0
    for _ in range(3):
        grads = [torch.randn_like(p) for p in ours]
        for params, opt in ((ours, fast), (plain, slow)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)
