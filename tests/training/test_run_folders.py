"""What a run folder holds is never lost or mixed: a repeated command, a resume on other data, an estimate written
over its source, a stop while the final grid is drawn."""

import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest

import processes
from ddpm_hf.identity import IdentityMismatchError
from ddpm_hf.training import parse_args, train
from ddpm_hf.training.loop import RunExistsError
from tiny import tiny_train_args

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "examples" / "train_ddpm.py")
TWO_STEPS = {"max_train_steps": 2, "checkpointing_steps": 2, "save_images_steps": 0, "num_inference_steps": 3}


def digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path) -> Path:
    out = tmp_path / "run"
    train(parse_args(tiny_train_args(out, **TWO_STEPS)))
    return out


def test_the_same_command_again_is_refused_and_changes_nothing(finished):
    """It used to replace the run's checkpoint-2 and pipeline without a word, and `latest` then mixed two runs."""
    before = digest(finished)
    with pytest.raises(RunExistsError) as refused:
        train(parse_args(tiny_train_args(finished, **TWO_STEPS)))
    message = str(refused.value)
    assert "holds a run" in message and "--resume_from_checkpoint latest" in message
    assert "--output_dir" in message and "--overwrite_output_dir" in message
    assert digest(finished) == before


def test_a_run_stopped_before_its_first_checkpoint_is_started_again(tmp_path):
    """Its settings alone hold nothing to lose or mix: the corrected command runs there (it was refused)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_config.json").write_text(json.dumps({"seed": 0}))
    train(parse_args(tiny_train_args(out, **TWO_STEPS, seed=1)))
    assert json.loads((out / "train_config.json").read_text())["seed"] == 1
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not list(tmp_path.glob("run.replaced-*"))


def test_overwrite_output_dir_moves_the_old_run_aside(finished):
    before = digest(finished)
    train(parse_args([*tiny_train_args(finished, **TWO_STEPS, seed=1), "--overwrite_output_dir"]))
    (aside,) = finished.parent.glob("run.replaced-*")
    assert digest(aside) == before  # the old run, whole
    assert (finished / "checkpoints" / "checkpoint-2").is_dir() and (finished / "model_index.json").is_file()
    assert json.loads((finished / "train_config.json").read_text())["seed"] == 1


def test_a_resume_on_other_data_is_refused_naming_both(finished):
    recorded = json.loads((finished / "train_config.json").read_text())["data"]
    assert recorded["num_images"] == 1500 and recorded["split"] == "train" and len(recorded["sha256"]) == 64
    resume = [*tiny_train_args(finished, **{**TWO_STEPS, "max_train_steps": 4}), "--resume_from_checkpoint", "latest"]
    with pytest.raises(IdentityMismatchError) as refused:
        train(parse_args([*resume, "--dataset_split", "test"]))
    message = str(refused.value)
    assert "1,500 images of sklearn-digits (train)" in message and "297 images of sklearn-digits (test)" in message
    assert not (finished / "checkpoints" / "checkpoint-4").exists()
    train(parse_args([*resume, "--dataset_split", "test", "--resume_on_other_data"]))  # when asked, it goes on
    assert (finished / "checkpoints" / "checkpoint-4").is_dir()


def test_the_script_says_a_refusal_without_a_traceback(finished):
    result = processes.run([sys.executable, SCRIPT, *tiny_train_args(finished, **TWO_STEPS)], cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "holds a run" in result.stderr


def test_ctrl_c_while_the_final_grid_is_drawn_keeps_the_run_and_says_so(tmp_path):
    """Ctrl-C during samples.png gave a 23-frame KeyboardInterrupt traceback (the signal handling ended before it)."""
    out = tmp_path / "run"
    grid = {"num_inference_steps": 1000, "num_grid_images": 64}  # seconds of sampling, after a one-step run
    args = tiny_train_args(out, **{**TWO_STEPS, "max_train_steps": 1, "checkpointing_steps": 1, **grid})
    run = processes.Watched([sys.executable, SCRIPT, *args], cwd=ROOT)
    end = time.monotonic() + 300
    while not re.search(r"sampling 64 images for samples\.png:\s+\d+%\|[^|]*\| [1-9]\d*/", run.stderr()):
        assert run.process.poll() is None, run.stderr()[-3000:]
        assert time.monotonic() < end, "the grid never started"
        time.sleep(0.05)
    run.process.send_signal(signal.SIGINT)
    code, out_text = run.finish()
    assert code == 128 + signal.SIGINT, run.stderr()[-3000:]
    said = out_text + run.stderr()
    assert "Traceback" not in said and "KeyboardInterrupt" not in said
    assert "stopped by SIGINT while drawing samples.png" in said and "examples/sample.py --model" in said
    assert (out / "model_index.json").is_file() and (out / "checkpoints" / "checkpoint-1").is_dir()
    assert not (out / "samples.png").exists()
