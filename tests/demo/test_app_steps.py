"""The Sample tab's number of steps: within 1..T as before, and within what the model's sampler takes."""

import pytest
from diffusers import DPMSolverMultistepScheduler, PNDMScheduler

gr = pytest.importorskip("gradio", reason="gradio is not installed (the demo extra: pip install -e '.[demo]')")
from ddpm_hf.demo import Demo  # noqa: E402
from tiny import train_tiny_digits  # noqa: E402

T = 20


def error_of(job, status: int) -> str:
    *_, last = job
    assert last[status].startswith("**Error:** "), last[status]
    assert all(value is None for i, value in enumerate(last) if i != status)
    return last[status]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same tiny model saved with DPM-Solver++ (1 to T - 1 steps), PNDM's PLMS (2 to T) and PNDM with its
    Runge-Kutta warm-up (4 to T / 2)."""
    root = tmp_path_factory.mktemp("steps")
    pipe = train_tiny_digits(steps=2, num_train_timesteps=T)
    config = pipe.scheduler.config
    for name, scheduler in {
        "dpm": DPMSolverMultistepScheduler.from_config(config),
        "plms": PNDMScheduler.from_config(config, skip_prk_steps=True),
        "prk": PNDMScheduler.from_config(config),
    }.items():
        pipe.scheduler = scheduler
        pipe.save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def demo(folders):
    return Demo.serve([str(folders / name) for name in ("dpm", "plms", "prk")])


def test_a_count_the_sampler_cannot_take_is_a_message(demo, folders):
    dpm, plms = str(folders / "dpm"), str(folders / "plms")
    message = error_of(demo.sample(dpm, 1, 0, T, "fp32"), status=4)
    assert message.startswith("**Error:** number of steps: DPMSolverMultistepScheduler cannot take 20 steps: ")
    assert message.endswith("it takes 1 to 19 steps")
    assert "it takes 2 to 20 steps" in error_of(demo.sample(plms, 1, 0, 1, "fp32"), status=4)
    # Refused before the tab asks the sampler whether it gives x̂_0 (a step of PNDM's 3-step chain fails in numpy).
    assert "PNDMScheduler cannot take 3 steps" in error_of(demo.sample(str(folders / "prk"), 1, 0, 3, "fp32"), 4)
    # The T bound keeps its message.
    assert "number of steps must be a whole number from 1 to 20, got 21" in error_of(
        demo.sample(dpm, 1, 0, T + 1, "fp32"), status=4
    )
    *_, (_, _, samples, _, status) = demo.sample(dpm, 1, 0, T - 1, "fp32")
    assert samples is not None and status.startswith("1 samples, 19 steps")
