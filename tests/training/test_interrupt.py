"""Interrupted runs keep their work: real SIGTERM / SIGINT sent to real training processes (one, and two through
`accelerate launch`), then a resume that ends bit-identical to an uninterrupted run."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import processes
from ddpm_hf.training.checkpoint import list_checkpoints
from tiny import tiny_train_args

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "examples" / "train_ddpm.py")
FOREVER = {"max_train_steps": 100_000, "checkpointing_steps": 100_000, "dropout": 0.1}  # stops only on a signal
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
LAUNCH += ["--dynamo_backend", "no", "--main_process_port", "0"]
ENV = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}


class Training(processes.Watched):
    """A training process whose progress bar is watched, so that a signal is sent mid-run, after `steps` steps."""

    def __init__(self, command: list[str]) -> None:
        self.steps = 0
        super().__init__(command, env=ENV, cwd=ROOT)  # its own process group, as a cluster job

    def on_output(self) -> None:
        done = re.findall(r"train:\s+\d+%\|[^|]*\| (\d+)/", self.stderr()[-2000:])
        self.steps = max([self.steps, *map(int, done)])

    def wait_for_steps(self, steps: int, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while self.steps < steps:
            assert self.process.poll() is None, self.stderr()[-3000:]
            assert time.monotonic() < end, "training made no progress"
            time.sleep(0.05)


def final_model(out: Path, step: int) -> dict:
    return load_file(out / "checkpoints" / f"checkpoint-{step}" / "model.safetensors")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigterm_saves_says_how_to_resume_and_the_resumed_run_is_exact(tmp_path):
    """The run has a checkpoint from before (step 2), so a handler that saved nothing on the signal would leave a
    resumable folder too: the signal's checkpoint must be at the interrupted step, and the resumed run must go on
    from there, not redo steps."""
    stopped = tmp_path / "stopped"
    two_steps = [sys.executable, SCRIPT, *tiny_train_args(stopped, **{**FOREVER, "max_train_steps": 2})]
    first = processes.run(two_steps, env=ENV, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    run = Training([sys.executable, SCRIPT, *tiny_train_args(stopped, **FOREVER), "--resume_from_checkpoint", "latest"])
    run.wait_for_steps(4)
    run.process.send_signal(signal.SIGTERM)
    code, _ = run.finish()
    said = run.stderr()
    assert code == 128 + signal.SIGTERM, said[-2000:]
    saved = list_checkpoints(stopped / "checkpoints")
    assert not list((stopped / "checkpoints").glob("tmp-*"))
    step = int(said.split("stopped by SIGTERM after step ", 1)[1].split(";")[0])
    assert step >= 4 and [p.name for p in saved] == ["checkpoint-2", f"checkpoint-{step}"]
    assert json.loads((saved[-1] / "training_state.json").read_text()) == {"step": step}
    command = said.split("Resume with:\n", 1)[1].splitlines()[0].strip()  # started as `python SCRIPT`: resumed so
    assert command.startswith(f"python {SCRIPT} ") and command.endswith("--resume_from_checkpoint latest")
    assert "Traceback" not in run.stderr()

    # Resume to two steps further, against a run that was never stopped: the same weights, bit for bit.
    end = {**FOREVER, "max_train_steps": step + 2}
    again = [sys.executable, SCRIPT, *tiny_train_args(stopped, **end), "--resume_from_checkpoint", "latest"]
    resumed = processes.run(again, env=ENV, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {step}" in resumed.stderr and f"done: {step + 2} steps (2 this run)" in resumed.stderr
    straight = tmp_path / "straight"
    whole = processes.run([sys.executable, SCRIPT, *tiny_train_args(straight, **end)], env=ENV, cwd=ROOT)
    assert whole.returncode == 0
    assert_same(final_model(stopped, step + 2), final_model(straight, step + 2))


def test_ctrl_c_under_python_stops_cleanly(tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to the whole foreground process group) to `python examples/
    train_ddpm.py`, the README's one-process command: a checkpoint, the resume command, no traceback. (Under a
    one-process `accelerate launch`, Accelerate's launcher also gets the SIGINT while it waits for the script and
    prints its own KeyboardInterrupt traceback: huggingface/accelerate#929.)"""
    out = tmp_path / "run"
    run = Training([sys.executable, SCRIPT, *tiny_train_args(out, **FOREVER)])
    run.wait_for_steps(2)
    os.killpg(run.process.pid, signal.SIGINT)
    code, stdout = run.finish()
    assert code == 128 + signal.SIGINT, run.stderr()[-2000:]
    assert "Traceback" not in run.stderr() + stdout and "KeyboardInterrupt" not in run.stderr() + stdout
    assert "SIGINT: finishing this step and saving a checkpoint" in run.stderr()
    step = int(run.stderr().split("stopped by SIGINT after step ", 1)[1].split(";")[0])
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == [f"checkpoint-{step}"]
    command = run.stderr().split("Resume with:\n", 1)[1].splitlines()[0].strip()
    assert command.startswith(f"python {SCRIPT} --preset digits")


def test_a_second_signal_stops_at_once(tmp_path):
    # Steps made to last two minutes, so the second Ctrl-C lands within a step whatever the machine's speed.
    out = tmp_path / "run"
    hooked = [sys.executable, str(ROOT / "tests" / "support" / "hooked_training.py"), "--step_seconds", "120", "--"]
    run = Training([*hooked, *tiny_train_args(out, **FOREVER)])
    run.wait_for_steps(1)
    run.process.send_signal(signal.SIGINT)
    time.sleep(1.5)  # beyond the window in which a launcher's forwarded copy of the first is ignored
    started = time.monotonic()
    run.process.send_signal(signal.SIGINT)
    code, _ = run.finish()
    assert code == -signal.SIGINT  # ended by the signal itself, without finishing the step
    assert time.monotonic() - started < 60  # not at the step's end
    assert list_checkpoints(out / "checkpoints") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_two_processes_stop_together_and_resume_exactly(tmp_path, signum):
    """A cluster stops a job by signalling every process in it: here the launcher and both workers (the launcher
    also forwards the signal to the workers, a copy they must not take for a second signal)."""
    stopped = tmp_path / "stopped"
    two = [*LAUNCH, "--multi_gpu", "--num_processes", "2", SCRIPT]
    run = Training([*two, *tiny_train_args(stopped, **FOREVER)])
    run.wait_for_steps(2)
    os.killpg(run.process.pid, signum)
    code, out = run.finish()
    assert code != 0, out
    saved = list_checkpoints(stopped / "checkpoints")
    assert len(saved) == 1, run.stderr()[-3000:]
    step = int(saved[0].name.split("-")[1])
    assert {p.name for p in saved[0].glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}

    end = {**FOREVER, "max_train_steps": step + 2}
    again = [*two, *tiny_train_args(stopped, **end), "--resume_from_checkpoint", "latest"]
    resumed = processes.run(again, env=ENV, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = tmp_path / "straight"
    whole = processes.run([*two, *tiny_train_args(straight, **end)], env=ENV, cwd=ROOT)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert_same(final_model(stopped, step + 2), final_model(straight, step + 2))


def test_the_resume_command_repeats_the_launchers_flags(tmp_path):
    """`accelerate launch --cpu --num_processes 1 ...` used to be printed as `accelerate launch ...`, which on a
    2-core machine pins the process to one thread (about 8× slower)."""
    from ddpm_hf.training.interrupt import launcher_flags, resume_command

    parent = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--cpu", "--num_processes", "1", "train.py", "-x"]
    assert launcher_flags("train.py", parent) == ["--cpu", "--num_processes", "1"]
    assert resume_command(["train.py", "--preset", "digits"], parent) == (
        "accelerate launch --cpu --num_processes 1 train.py --preset digits --resume_from_checkpoint latest"
    )
    assert launcher_flags("train.py", ["bash", "-c", "python train.py"]) is None  # not started by accelerate launch
    # Under a real `accelerate launch`, read from the launching process.
    script = tmp_path / "print_resume.py"
    script.write_text("from ddpm_hf.training.interrupt import resume_command\nprint(resume_command())\n")
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    launched = processes.run(
        [accelerate, "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", str(script), "--seed", "3", "--resume_from_checkpoint", "checkpoint-2"],
        env=ENV, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-2000:]
    expected = f"--dynamo_backend no {script} --seed 3 --resume_from_checkpoint latest"
    assert launched.stdout.strip().endswith(expected) and "--cpu --num_processes 1" in launched.stdout
