"""Bad input at the pipeline's doors gets a message that says what is wrong, not a wrong result or a raw traceback:
a network whose output is not finite, a local folder that does not exist."""

import pytest
import torch

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.pipeline import NonFiniteSampleError
from tiny import tiny_pipeline


def test_a_network_with_non_finite_output_does_not_sample_black_images():
    pipe = tiny_pipeline()
    with torch.no_grad():
        pipe.unet.conv_out.bias[0] = float("nan")  # one channel of every ε̂ is NaN
    with pytest.raises(NonFiniteSampleError, match="2 of 2 samples hold NaN"):
        pipe(batch_size=2, num_inference_steps=3, precision="fp32")
    with pytest.raises(NonFiniteSampleError):
        pipe(batch_size=1, num_inference_steps=3, output_type="np", precision="bf16")


@pytest.mark.parametrize("path", ["./runs/missing", "/nonexistent/run", "a/b/c"])
def test_a_missing_folder_is_reported_as_a_missing_folder(path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DDPMPaperPipeline.from_pretrained(path)


def test_a_name_that_is_neither_a_folder_nor_a_repo_says_both(hub_server):
    with pytest.raises(OSError, match=r"runs/missing is not a folder here \(no such directory\), and as a Hub repo"):
        DDPMPaperPipeline.from_pretrained("runs/missing")


def test_examples_report_a_missing_model_folder(run_example, tmp_path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(FileNotFoundError, match=f"no pipeline folder at {missing}"):
        run_example("evaluate_nll", ["--model", missing, "--dataset_name", "sklearn-digits", "--num_images", 1])
