"""`ddpm_hf.training.losses`: L_simple (Eq. 14) and the true bound (Table 2), each chosen by name."""

import pytest
import torch

from ddpm_hf import DDPMPaperScheduler
from ddpm_hf.likelihood import vlb_terms
from ddpm_hf.training import parse_args, train
from ddpm_hf.training.losses import SimpleLoss, VLBLoss, diffusion_loss, make_loss
from tiny import tiny_train_args


def batch():
    g = torch.Generator().manual_seed(0)
    x_0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    return x_0, torch.tensor([0, 1, 500, 999]), torch.randn(4, 1, 8, 8, generator=g)


def test_simple_loss_is_the_mean_squared_noise_error_per_example():
    x_0, t, noise = batch()
    eps = noise + torch.arange(4.0).view(4, 1, 1, 1)  # errors of 0, 1, 2, 3 on every pixel
    assert torch.equal(SimpleLoss()(x_0, x_0, t, noise, eps), torch.tensor([0.0, 1.0, 4.0, 9.0]))


def test_diffusion_loss_feeds_the_network_q_sample():
    scheduler = DDPMPaperScheduler()
    x_0, t, noise = batch()
    seen = []

    def eps_model(x_t, t_in):
        seen.append((x_t, t_in))
        return torch.zeros_like(x_t)

    loss = diffusion_loss(eps_model, scheduler, make_loss("simple", scheduler), x_0, t, noise)
    assert torch.equal(seen[0][0], scheduler.q_sample(x_0, t, noise)) and torch.equal(seen[0][1], t)
    torch.testing.assert_close(loss, noise.square().mean(dim=(1, 2, 3)))
    vlb = diffusion_loss(eps_model, scheduler, make_loss("vlb", scheduler), x_0, t, noise)
    x_t = scheduler.q_sample(x_0, t, noise)
    assert vlb.dtype == torch.float64 and torch.equal(vlb, vlb_terms(scheduler, x_0, x_t, t, torch.zeros_like(x_t)))
    with pytest.raises(ValueError, match="loss must be one of"):
        make_loss("l1", scheduler)


def test_vlb_loss_trains_on_the_bounds_terms(tmp_path, monkeypatch):
    seen = []
    real = VLBLoss.__call__

    def recording(self, x_0, x_t, t, noise, eps):
        loss = real(self, x_0, x_t, t, noise, eps)
        seen.append((loss.detach(), vlb_terms(self.scheduler, x_0, x_t, t, eps.detach())))
        return loss

    monkeypatch.setattr(VLBLoss, "__call__", recording)
    train(parse_args(tiny_train_args(tmp_path / "run", loss="vlb", max_train_steps=2, checkpointing_steps=2)))
    assert len(seen) == 2
    for loss, expected in seen:
        assert torch.equal(loss, expected) and torch.isfinite(loss).all()
    assert {loss.dtype for loss, _ in seen} == {torch.float64}  # the bound's arithmetic stays float64
