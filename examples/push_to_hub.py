"""Upload a saved DDPMPaperPipeline folder and its rendered model card to the Hugging Face Hub.

python examples/push_to_hub.py --model runs/cifar10 --repo_id you/ddpm-cifar10
python examples/push_to_hub.py --model runs/cifar10 --repo_id you/ddpm-cifar10 --metrics evaluation/metrics.json \\
    --revision ema-800k --private --commit_message "EMA weights at 800k steps"

The card is rendered from model_card.md for --repo_id, keeping the training configuration and dataset of the card
that training saved in the folder (README.md), and adding the measured metrics of `examples/evaluate.py`'s JSON
(--metrics, or MODEL/metrics.json when present). The folder itself is only read: a failed push loses nothing.

python examples/push_to_hub.py --model runs/digits --repo_id you/ddpm-digits --space you/ddpm-digits-demo

--space also makes a Gradio Space beside the model (created if missing): examples/app.py as its app.py, a
requirements.txt that installs this package with its demo extra (--space_requirement names another source of it,
e.g. `ddpm_hf[demo] @ git+https://github.com/you/ddpm_hf@v0.4.0`), and a README whose front matter Spaces read
(sdk: gradio, app_file, and the model under `models:`, which both links the two on the Hub and tells the app which
model to open).
"""

import argparse
import importlib.metadata
import shutil
import sys
import tempfile
from pathlib import Path

from cli import weights_sha256
from huggingface_hub import SpaceCard, SpaceCardData

import ddpm_hf
from ddpm_hf import DDPMPaperPipeline
from ddpm_hf.card import rerender_card
from ddpm_hf.evaluation import EvaluationError, EvaluationReport
from ddpm_hf.hub import HubUploadError, check_repo_id, pipeline_files, upload_folder
from ddpm_hf.identity import IdentityMismatchError, check_metrics, sampler_identity

APP = Path(__file__).with_name("app.py")
SPACE_REQUIREMENT = f"ddpm_hf[demo]=={ddpm_hf.__version__}"  # this package, with the app's own requirements
SPACE_FILES = ["README.md", "app.py", "requirements.txt"]
SPACE_TEXT = """
# DDPM demo: {model}

Sample [{model}]({model_url}) (a `DDPMPaperPipeline` of the `ddpm_hf` package) and watch the reverse process run,
interpolate between two images as in the paper's Fig. 8, or measure an image's bits/dim and its rate–distortion curve.

Run it on your machine:

```bash
pip install "{requirement}"
python app.py --model {model}
```
"""


def stage(model: Path, staged: Path) -> list[str]:
    """Copy the pipeline's files and the training run's sample grid (never its checkpoints, nor its card) into
    `staged`; return their names."""
    files = pipeline_files(model, extra=("samples.png",))
    for relative in files:
        (staged / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model / relative, staged / relative)
    return files


def stage_space(staged: Path, model_repo: str, endpoint: str, requirement: str) -> list[str]:
    """Write a Gradio Space that opens `model_repo` into `staged`; return its files' names."""
    staged.mkdir(parents=True, exist_ok=True)
    shutil.copy2(APP, staged / "app.py")
    (staged / "requirements.txt").write_text(requirement + "\n")
    try:
        gradio_version = importlib.metadata.version("gradio")  # the Gradio the app runs with here
    except importlib.metadata.PackageNotFoundError:
        gradio_version = None
    data = SpaceCardData(
        title=f"DDPM {model_repo.split('/')[-1]}",
        sdk="gradio",
        sdk_version=gradio_version,
        app_file="app.py",
        models=[model_repo],
        pinned=False,
        short_description="Sample, interpolate and measure a DDPM",
    )
    text = SPACE_TEXT.format(model=model_repo, model_url=f"{endpoint}/{model_repo}", requirement=requirement)
    SpaceCard(f"---\n{data.to_yaml()}\n---\n{text}").save(staged / "README.md")
    return list(SPACE_FILES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a folder saved by save_pretrained / the training script")
    parser.add_argument("--repo_id", required=True, help="owner/name on the Hub")
    parser.add_argument("--metrics", default=None, help="metrics JSON from examples/evaluate.py")
    parser.add_argument(
        "--metrics_of_other_sampler",
        action="store_true",
        help="push metrics measured with another scheduler than the folder's (the card names each metric's sampler)",
    )
    parser.add_argument("--dataset", default=None, help="training dataset for the card (default: the saved card's)")
    parser.add_argument("--private", action="store_true", help="create the repo private (refuses a public one)")
    parser.add_argument("--revision", default=None, help="branch to commit to (created from main if missing)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--token", default=None, help="default: HF_TOKEN or the stored login")
    parser.add_argument("--space", default=None, help="also make a Gradio Space (owner/name) demoing the model")
    parser.add_argument(
        "--space_requirement",
        default=SPACE_REQUIREMENT,
        help=f"the Space's requirements.txt line that installs this package (default: {SPACE_REQUIREMENT})",
    )
    args = parser.parse_args(argv)
    for flag in ("repo_id", "space"):  # both checked before the first upload
        if getattr(args, flag) is not None:
            try:
                check_repo_id(getattr(args, flag), f"--{flag}")
            except ValueError as e:
                parser.error(str(e))
    if args.space and args.revision not in (None, "main"):
        parser.error("--space opens the model's main branch: push the model without --revision to add a Space")

    model = Path(args.model)
    pipe = DDPMPaperPipeline.from_pretrained(model)  # refuse to push a folder that does not load
    metrics_path = Path(args.metrics) if args.metrics else model / "metrics.json"
    if args.metrics and not metrics_path.is_file():
        parser.error(f"--metrics {metrics_path} does not exist")
    try:
        metrics = EvaluationReport.load(metrics_path) if metrics_path.is_file() else None
    except EvaluationError as e:
        parser.error(str(e))
    if metrics is not None:
        # A card's metric must be the pushed weights' and, unless said otherwise, the pushed sampler's.
        try:
            check_metrics(
                metrics.record,
                weights_sha256(str(model)),
                sampler_identity(pipe.scheduler),
                what=str(metrics_path),
                target=str(model),
                other_sampler=args.metrics_of_other_sampler,
                other_sampler_hint="--metrics_of_other_sampler",
            )
        except IdentityMismatchError as e:
            parser.error(str(e))
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
    if args.space:
        model_repo = commit.repo_url.repo_id  # the full id, also when --repo_id was a bare name
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / "space"
            files = stage_space(staged, model_repo, commit.repo_url.endpoint, args.space_requirement)
            try:
                space = upload_folder(
                    staged,
                    args.space,
                    private=args.private or None,
                    commit_message=args.commit_message or f"Demo of {model_repo}",
                    token=args.token,
                    files=files,
                    source="the Space's files (the model is pushed)",
                    repo_type="space",
                )
            except HubUploadError as e:
                sys.exit(f"the model is pushed, but the Space push failed: {e}")
        print(f"made the Space {space.repo_url.repo_id} for {model_repo}: {space.commit_url}")


if __name__ == "__main__":
    main()
