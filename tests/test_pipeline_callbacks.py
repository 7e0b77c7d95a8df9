"""diffusers' `PipelineCallback` objects name the tensors they read themselves (`tensor_inputs`); as in diffusers'
pipelines, those are what they get, whatever the call's `callback_on_step_end_tensor_inputs` says."""

import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from tiny import tiny_unet

STEPS = 3


def recording_callback(inputs: list[str]) -> PipelineCallback:
    """A PipelineCallback reading `inputs`, recording the keys and tensors of each call."""

    class Record(PipelineCallback):
        tensor_inputs = inputs

        def __init__(self):
            super().__init__(cutoff_step_ratio=None, cutoff_step_index=STEPS)  # past the end: never cuts off
            self.calls = []

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            self.calls.append((step_index, {k: v.clone() for k, v in callback_kwargs.items()}))
            return callback_kwargs  # as diffusers' own callbacks do: the tensors, changed or not

    return Record()


@pytest.fixture(scope="module")
def pipe():
    pipe = DDPMPaperPipeline(unet=tiny_unet(), scheduler=DDPMPaperScheduler(num_train_timesteps=20))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize(
    ("own", "call"),
    [
        (["latents", "pred_original_sample"], ["latents"]),  # the call's default
        (["pred_original_sample"], ["latents"]),
        (["latents"], ["pred_original_sample"]),
        (["pred_original_sample", "latents"], []),
    ],
)
def test_a_pipeline_callback_gets_its_own_tensor_inputs(pipe, own, call):
    record = recording_callback(own)
    pipe(
        1,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=STEPS,
        output_type="pt",
        callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=call,
    )
    assert [i for i, _ in record.calls] == list(range(STEPS))
    assert all(sorted(kwargs) == sorted(own) for _, kwargs in record.calls)
    if "pred_original_sample" in own:  # x̂_0 itself, clipped to [-1, 1] as the paper's sampler clips it
        assert all(kwargs["pred_original_sample"].abs().max() <= 1.0 for _, kwargs in record.calls)


def test_multi_pipeline_callbacks_get_the_union_of_their_inputs(pipe):
    first, second = recording_callback(["latents"]), recording_callback(["pred_original_sample"])
    pipe(
        1,
        num_inference_steps=STEPS,
        output_type="pt",
        callback_on_step_end=MultiPipelineCallbacks([first, second]),
        callback_on_step_end_tensor_inputs=["latents"],
    )
    # diffusers hands every callback of the group the group's inputs, the union of theirs.
    for record in (first, second):
        assert len(record.calls) == STEPS
        assert all(sorted(kwargs) == ["latents", "pred_original_sample"] for _, kwargs in record.calls)


def test_a_plain_callable_gets_the_calls_tensor_inputs(pipe):
    seen = []
    pipe(
        1,
        num_inference_steps=STEPS,
        output_type="pt",
        callback_on_step_end=lambda p, i, t, kw: seen.append(sorted(kw)) or {},
        callback_on_step_end_tensor_inputs=["pred_original_sample"],
    )
    assert seen == [["pred_original_sample"]] * STEPS
