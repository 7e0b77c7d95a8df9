"""The resume command printed when training stops on a signal is the command that started it.

A run started as `accelerate launch SCRIPT ...` with no launcher flags is still a launched run: printing
`python SCRIPT ...` for it would resume outside the launcher (one process where it chose several, no Accelerate
config). Built from the script's argv and the launching process's command line, given here as they would be.
"""

import pytest

from ddpm_hf.training.interrupt import launcher_flags, resume_command

SCRIPT = "examples/train_ddpm.py"
ARGS = ["--preset", "digits", "--output_dir", "out dir"]
RESUMED = "examples/train_ddpm.py --preset digits --output_dir 'out dir' --resume_from_checkpoint latest"


@pytest.mark.parametrize(
    "parent",
    [
        ["/venv/bin/python", "/venv/bin/accelerate", "launch", SCRIPT, *ARGS],  # the console script via its shebang
        ["/venv/bin/accelerate", "launch", SCRIPT, *ARGS],
        ["accelerate", "launch", SCRIPT, *ARGS],
    ],
)
def test_accelerate_launch_without_flags_resumes_under_accelerate_launch(parent):
    assert launcher_flags(SCRIPT, parent) == []  # launched, with no flags: not "not launched"
    assert resume_command([SCRIPT, *ARGS], parent) == f"accelerate launch {RESUMED}"
    # An earlier resume's checkpoint gives way to the latest, in either spelling.
    again = [SCRIPT, *ARGS, "--resume_from_checkpoint", "checkpoint-20"]
    assert resume_command(again, parent) == f"accelerate launch {RESUMED}"
    assert resume_command([SCRIPT, "--resume_from_checkpoint=checkpoint-20", *ARGS], parent) == (
        f"accelerate launch {RESUMED}"
    )


def test_the_launchers_flags_are_kept_and_a_plain_run_resumes_plainly():
    launched = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--num_processes", "2", SCRIPT, *ARGS]
    assert launcher_flags(SCRIPT, launched) == ["--num_processes", "2"]
    assert resume_command([SCRIPT, *ARGS], launched) == f"accelerate launch --num_processes 2 {RESUMED}"
    for parent in (["bash"], ["/bin/bash", "-c", f"python {SCRIPT}"], ["python", "-m", "pytest"]):
        assert launcher_flags(SCRIPT, parent) is None
        assert resume_command([SCRIPT, *ARGS], parent) == f"python {RESUMED}"
