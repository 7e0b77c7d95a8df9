"""Upload a saved DDPMPaperPipeline folder and its rendered model card to the Hugging Face Hub.

python examples/push_to_hub.py --model runs/cifar10 --repo_id you/ddpm-cifar10
python examples/push_to_hub.py --model runs/cifar10 --repo_id you/ddpm-cifar10 --metrics evaluation/metrics.json \\
    --revision ema-800k --private --commit_message "EMA weights at 800k steps"

The card is rendered from model_card.md for --repo_id, keeping the training configuration and dataset of the card
that training saved in the folder (README.md), and adding the measured metrics of `examples/evaluate.py`'s JSON
(--metrics, or MODEL/metrics.json when present). The folder itself is only read: a failed push loses nothing.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import rerender_card
from ddpm_hf.hub import HubUploadError, pipeline_files, upload_folder


def stage(model: Path, staged: Path) -> list[str]:
    """Copy the pipeline's files and the training run's sample grid (never its checkpoints, nor its card) into
    `staged`; return their names."""
    files = pipeline_files(model, extra=("samples.png",))
    for relative in files:
        (staged / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model / relative, staged / relative)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a folder saved by save_pretrained / the training script")
    parser.add_argument("--repo_id", required=True, help="owner/name on the Hub")
    parser.add_argument("--metrics", default=None, help="metrics JSON from examples/evaluate.py")
    parser.add_argument("--dataset", default=None, help="training dataset for the card (default: the saved card's)")
    parser.add_argument("--private", action="store_true", help="create the repo private (refuses a public one)")
    parser.add_argument("--revision", default=None, help="branch to commit to (created from main if missing)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--token", default=None, help="default: HF_TOKEN or the stored login")
    args = parser.parse_args(argv)

    model = Path(args.model)
    DDPMPaperPipeline.from_pretrained(model)  # refuse to push a folder that does not load
    metrics_path = Path(args.metrics) if args.metrics else model / "metrics.json"
    if args.metrics and not metrics_path.is_file():
        parser.error(f"--metrics {metrics_path} does not exist")
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    card_kwargs = {"metrics": metrics, "revision": args.revision}
    if args.dataset:
        card_kwargs["dataset"] = args.dataset
    card = rerender_card(model / "README.md", args.repo_id, **card_kwargs)

    with tempfile.TemporaryDirectory() as tmp:  # a copy, so that the card never overwrites the folder's own
        staged = Path(tmp) / model.name
        files = [*stage(model, staged), "README.md"]
        card.save(staged / "README.md")
        try:
            commit = upload_folder(
                staged,
                args.repo_id,
                revision=args.revision,
                private=args.private or None,
                commit_message=args.commit_message,
                token=args.token,
                files=files,
                source=str(model),
            )
        except HubUploadError as e:
            sys.exit(f"push failed: {e}")
    print(f"pushed {model} to {commit.commit_url}" + (" with metrics" if metrics else ""))


if __name__ == "__main__":
    main()
