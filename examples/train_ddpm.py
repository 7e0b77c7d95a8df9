"""Train a DDPM with the paper's recipe.

    python examples/train_ddpm.py --preset digits                                  # bundled data, one process
    accelerate launch examples/train_ddpm.py --preset cifar10 --dataset_name cifar10 --output_dir runs/cifar10
    accelerate launch --multi_gpu --num_processes 8 examples/train_ddpm.py --preset cifar10 ...

`--preset NAME --help` lists every flag with that preset's defaults. SIGTERM or Ctrl-C stops after the current
step with a checkpoint and prints the command that resumes (exit code 128 + the signal's number).
"""

import sys

from ddpm_hf.errors import DDPMError
from ddpm_hf.training import TrainingInterrupted, parse_args, train

if __name__ == "__main__":
    try:
        train(parse_args())
    except TrainingInterrupted as stopped:
        sys.exit(stopped.exit_code)
    except DDPMError as refused:  # a refusal (an output folder holding a run, a resume on other data...): its message
        sys.exit(f"error: {refused}")
