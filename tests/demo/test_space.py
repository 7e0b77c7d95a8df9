"""`examples/push_to_hub.py --space`: a Gradio Space beside the model repo, against the loopback Hub server."""

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard, snapshot_download
from packaging.requirements import Requirement

import ddpm_hf
from ddpm_hf.card import render_model_card
from ddpm_hf.hub import upload_folder
from tiny import PUSHED_PIPELINE_FILES, train_tiny_digits

APP_FILE = Path(__file__).resolve().parents[2] / "examples" / "app.py"
SPACE_FILES = {".gitattributes", "README.md", "app.py", "requirements.txt"}


@pytest.fixture
def model(tmp_path):
    """A saved digits run: the pipeline, its training card and its sample grid."""
    folder = tmp_path / "tiny-digits"
    train_tiny_digits(steps=2, num_train_timesteps=20).save_pretrained(folder)
    render_model_card("tiny-digits", dataset="sklearn-digits").save(folder / "README.md")
    (folder / "samples.png").write_bytes(b"\x89PNG fake")
    return folder


def space_card(hub_server, space: str) -> tuple[dict, SpaceCard]:
    files = hub_server.server.files(space, repo_type="space")
    return files, SpaceCard(files["README.md"].data.decode())


def test_push_with_space_makes_a_gradio_space_for_the_model(hub_server, model, run_example):
    run_example("push_to_hub", ["--model", model, "--repo_id", "user/ddpm-digits", "--space", "user/ddpm-demo"])

    assert set(hub_server.server.files("user/ddpm-digits")) == PUSHED_PIPELINE_FILES  # the model, as without --space
    assert ("space", "user/ddpm-demo") in hub_server.server.repos
    files, card = space_card(hub_server, "user/ddpm-demo")
    assert set(files) == SPACE_FILES
    assert files["app.py"].data == APP_FILE.read_bytes()  # the app itself, as tested here
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == ["user/ddpm-digits"]  # links the two on the Hub, and names the model the app opens
    if importlib.util.find_spec("gradio"):
        assert card.data.sdk_version == importlib.metadata.version("gradio")
    assert "python app.py --model user/ddpm-digits" in card.text

    (line,) = files["requirements.txt"].data.decode().splitlines()
    requirement = Requirement(line)  # installs this package, at this version, with the demo's requirements
    assert (requirement.name, requirement.extras) == ("ddpm_hf", {"demo"})
    assert requirement.specifier.contains(ddpm_hf.__version__) and str(requirement.specifier) == "==0.5.0"


def test_the_spaces_app_opens_the_model_repo(hub_server, model, run_example, tmp_path, monkeypatch):
    """What the Space runs: its app.py, from the Space's snapshot, opens the model repo named in its README."""
    pytest.importorskip("gradio", reason="gradio is not installed (the demo extra: pip install -e '.[demo]')")
    run_example("push_to_hub", ["--model", model, "--repo_id", "user/ddpm-digits", "--space", "user/ddpm-demo"])
    space = Path(snapshot_download("user/ddpm-demo", repo_type="space"))
    spec = importlib.util.spec_from_file_location("space_app", space / "app.py")
    app = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "space_app", app)  # as `python app.py` has it in sys.modules (its dataclasses)
    spec.loader.exec_module(app)

    monkeypatch.chdir(tmp_path)  # no runs/digits here
    monkeypatch.delenv(app.MODEL_ENV, raising=False)
    monkeypatch.setenv("SPACE_ID", "user/ddpm-demo")  # what the Hub sets in every Space
    args = app.parse_args([])  # a Space starts `python app.py` with no arguments
    assert args.host == "127.0.0.1"
    demo = app.make_demo(args)
    assert demo.first.name == "user/ddpm-digits"
    assert demo.dataset == "sklearn-digits"  # from the model repo's card
    assert demo.first.num_timesteps == 20
    # Public: a visitor opens only the Space's models and datasets, and nothing with the Space's token.
    assert demo.access.public and demo.access.models == ("user/ddpm-digits",) and demo.access.token is False
    assert demo.access.datasets == ("sklearn-digits",)
    assert "does not serve the model 'user/other'" in demo.open_model("user/other")[1]
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what a Space sets: the app listens where it says
    assert app.parse_args([]).host == "0.0.0.0"


def test_space_requirement_can_name_another_source(hub_server, model, run_example):
    spec = "ddpm_hf[demo] @ git+https://example.com/you/ddpm_hf@v0.4.0"
    argv = ["--model", model, "--repo_id", "user/m2", "--space", "user/s2", "--space_requirement", spec]
    run_example("push_to_hub", argv)
    files, _ = space_card(hub_server, "user/s2")
    assert files["requirements.txt"].data.decode() == spec + "\n"


def test_space_on_a_model_branch_is_refused(hub_server, model, run_example):
    with pytest.raises(SystemExit):
        run_example("push_to_hub", ["--model", model, "--repo_id", "user/m3", "--revision", "v1", "--space", "user/s3"])
    assert ("model", "user/m3") not in hub_server.server.repos  # refused before anything is pushed


def test_upload_folder_takes_only_model_space_and_dataset_repos(tmp_path):
    # dataset repos hold reference statistics (ddpm_hf.evaluation.push_reference, tested in
    # tests/evaluation/test_evaluation_cli.py)
    with pytest.raises(ValueError, match="repo_type must be 'model', 'space' or 'dataset'"):
        upload_folder(tmp_path, "user/x", files=[], repo_type="bucket")
