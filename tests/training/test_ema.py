"""`ddpm_hf.training.ema`: θ_ema ← decay · θ_ema + (1 − decay) · θ, kept in float32, carried by checkpoints."""

import pytest
import torch
from diffusers.training_utils import EMAModel

from ddpm_hf.training.ema import EMA, warmup_decay


def model(value: float, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    net = torch.nn.Linear(3, 2).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def test_update_is_the_papers_moving_average():
    net = model(1.0)
    ema = EMA(net, decay=0.9)
    assert all(torch.equal(s, torch.ones_like(s)) for s in ema.shadow)  # starts at the weights
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(3.0)
    ema.update(net)
    # 0.9 · 1 + 0.1 · 3 = 1.2 (the swapped formula would give 2.8)
    assert all(torch.allclose(s, torch.full_like(s, 1.2)) for s in ema.shadow)
    ema.update(net)
    assert all(torch.allclose(s, torch.full_like(s, 0.9 * 1.2 + 0.1 * 3.0)) for s in ema.shadow)


def test_shadow_is_float32_for_a_bf16_model_and_copies_back():
    net = model(0.5, torch.bfloat16)
    ema = EMA(net, decay=0.999)
    assert {s.dtype for s in ema.shadow} == {torch.float32}
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.5)
    for _ in range(3):
        ema.update(net)
    expected = 1.5 + (0.5 - 1.5) * 0.999**3  # the small steps survive in float32 (bf16 would round them away)
    assert all(torch.allclose(s, torch.full_like(s, expected), atol=1e-6) for s in ema.shadow)
    target = model(0.0, torch.bfloat16)
    ema.copy_to(target)
    assert all(p.dtype == torch.bfloat16 and torch.allclose(p.float(), torch.full_like(p.float(), expected), atol=1e-2)
               for p in target.parameters())  # fmt: skip


def test_state_round_trips_and_refuses_another_model():
    ema = EMA(model(2.0), decay=0.99)
    other = EMA(model(0.0), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.99 and all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow, strict=True))
    with pytest.raises(ValueError, match="EMA state has 2 tensors, the model 4"):
        EMA(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)), 0.9).load_state_dict(ema.state_dict())


@pytest.mark.parametrize(("inv_gamma", "power", "min_decay"), [(1.0, 0.75, 0.0), (10.0, 2 / 3, 0.5)])
def test_warmup_decay_is_diffusers_ema_models(inv_gamma, power, min_decay):
    reference = EMAModel(model(0.0).parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=inv_gamma,
                         power=power, min_decay=min_decay)  # fmt: skip
    for update in (1, 2, 3, 10, 100, 10_000, 10**7):  # EMAModel counts its updates from 1
        assert warmup_decay(update, 0.9999, inv_gamma, power, min_decay) == pytest.approx(reference.get_decay(update))
    assert warmup_decay(1, 0.9999, inv_gamma, power, min_decay) == 0.0  # the first update copies the weights
