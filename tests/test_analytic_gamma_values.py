"""Which Γ values a scheduler config accepts: Γ_t = E‖ε_θ(x_t, t)‖²/d is a mean square, so finite and ≥ 0.

A negative Γ would make Analytic-DPM's E‖x_0 − E[x_0|x_t]‖²/d = (1 − ᾱ_t)/ᾱ_t (1 − Γ_t) larger than any network
could have measured; the variance clip hides it, so a config carrying one must be refused where it is read.
"""

import json

import pytest
import torch

from ddpm_hf import DDPMPaperScheduler

T = 5


def config_with(value) -> list:
    return [0.9, 0.8, value, 0.6, 0.5]


@pytest.mark.parametrize(
    "value",
    [-1.0, -1e-12, -3, float("-inf"), float("inf"), float("nan"), True, False, "0.5", [0.5], {"gamma": 0.5}],
    ids=repr,
)
def test_an_impossible_gamma_is_refused(value):
    with pytest.raises(ValueError, match=r"analytic_gamma\[2\] = .*finite mean square \(≥ 0\)"):
        DDPMPaperScheduler(num_train_timesteps=T, variance_type="analytic", analytic_gamma=config_with(value))
    # Whatever the variance type: the config is wrong even where Γ is not used yet.
    with pytest.raises(ValueError, match=r"analytic_gamma\[2\]"):
        DDPMPaperScheduler(num_train_timesteps=T, analytic_gamma=config_with(value))
    base = DDPMPaperScheduler(num_train_timesteps=T).config
    with pytest.raises(ValueError, match=r"analytic_gamma\[2\]"):
        DDPMPaperScheduler.from_config(base, variance_type="analytic", analytic_gamma=config_with(value))


def test_a_negative_gamma_in_a_saved_config_is_refused_on_loading(tmp_path):
    good = DDPMPaperScheduler(num_train_timesteps=T, variance_type="analytic", analytic_gamma=config_with(0.7))
    good.save_pretrained(tmp_path)
    path = tmp_path / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["analytic_gamma"][3] = -0.25
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"analytic_gamma\[3\] = -0.25"):
        DDPMPaperScheduler.from_pretrained(tmp_path)


@pytest.mark.parametrize("value", [0.0, -0.0, 0, 1, 0.5, 1.5, None], ids=repr)
def test_a_possible_gamma_is_kept(value):
    """0 (a network that outputs zeros), above 1 (a network may overshoot E‖E[ε|x_t]‖²/d ≤ 1), None (not estimated)."""
    scheduler = DDPMPaperScheduler(num_train_timesteps=T, analytic_gamma=config_with(value))
    assert scheduler.config.analytic_gamma[2] == value
    if value is not None:
        analytic = DDPMPaperScheduler.from_config(scheduler.config, variance_type="analytic")
        assert torch.isfinite(analytic.model_log_variance).all()
