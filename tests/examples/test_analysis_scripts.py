"""The analysis examples end to end on a tiny model trained for a few steps on the bundled digits."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_hf import DDPMPaperPipeline
from tiny import train_tiny_digits, write_image_folder

T = 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits_model")
    train_tiny_digits(steps=30, num_train_timesteps=T).save_pretrained(folder)
    return str(folder)


def data_args() -> list[str]:
    return ["--dataset_name", "sklearn-digits", "--split", "train"]


def grid_cells(path, rows: int, cols: int, size: int = 8, scale: int = 1) -> np.ndarray:
    """The cells of a PNG grid of size×size images shown `scale` times, 1 px apart when enlarged: [rows, cols, H, W].
    The gaps must be mid-gray."""
    pixels = np.asarray(Image.open(path).convert("L"))
    pad, step = int(scale > 1), size * scale + int(scale > 1)
    assert pixels.shape == (rows * step - pad, cols * step - pad)
    if pad:
        assert (pixels[size * scale :: step] == 128).all() and (pixels[:, size * scale :: step] == 128).all()
    cells = np.stack([pixels[r * step : r * step + size * scale, c * step : c * step + size * scale]
                      for r in range(rows) for c in range(cols)])  # fmt: skip
    assert (cells == np.repeat(np.repeat(cells[:, ::scale, ::scale], scale, 1), scale, 2)).all()  # nearest
    return cells[:, ::scale, ::scale].reshape(rows, cols, size, size)


def to_8bit(x: torch.Tensor) -> np.ndarray:
    """Images on [-1, 1] [..., 1, H, W] as the 8-bit pixels a PNG of them holds (diffusers' numpy_to_pil)."""
    return ((x / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).squeeze(-3).numpy()


def digits(indices: list[int]) -> np.ndarray:
    """scikit-learn's digits at `indices` as 8-bit pixels, read from scikit-learn itself: [N, 8, 8]."""
    from sklearn.datasets import load_digits

    return np.round(load_digits().images[indices] * (255.0 / 16.0)).astype(np.uint8)


def test_evaluate_nll(model_dir, tmp_path, run_example, capsys):
    out = tmp_path / "nll.json"
    argv = ["--model", model_dir, *data_args(), "--num_images", "6", "--batch_size", "40", "--output", str(out)]
    report = run_example("evaluate_nll", [*argv, "--output_dir", tmp_path / "job"])
    assert json.loads(out.read_text()) == report
    assert report["num_images"] == 6 and len(report["terms_bpd"]) == T and report["bpd_stderr"] > 0
    parts = report["prior_bpd"] + report["decoder_bpd"] + report["kl_bpd"]
    assert report["bpd"] == pytest.approx(parts, rel=1e-9)
    assert "bits/dim over 6 images" in capsys.readouterr().out


def test_progressive(model_dir, tmp_path, run_example):
    out = tmp_path / "progressive.png"
    argv = ["--model", model_dir, "--num_images", "3", "--every", "5", "--with_xt", "--scale", "2"]
    run_example("progressive", [*argv, "--output", str(out)])
    # 8×8 images ×2, 1 px apart; columns t = 15, 10, 5, 0; rows x_t and x̂_0 per image
    assert Image.open(out).size == (4 * 16 + 3, 6 * 16 + 5)
    cells = grid_cells(out, rows=6, cols=4, scale=2)
    # What the pipeline method gives for the script's seeds (image i: seed + i, --seed 0)
    pipe = DDPMPaperPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    run = pipe.progressive(3, every=5, generator=generators, return_xt=True)
    assert run.timesteps == [15, 10, 5, 0]
    expected = np.stack([to_8bit(rows[i]) for i in range(3) for rows in (run.x_t, run.pred_xstart)])
    assert np.array_equal(cells, expected)
    assert cells.std() > 20 and not np.array_equal(cells[0], cells[2])  # not blank; images differ


def test_interpolate(model_dir, tmp_path, run_example):
    out = tmp_path / "interpolation.png"
    argv = ["--model", model_dir, *data_args(), "--index_b", "5", "--t", "10", "--num", "4", "--output", str(out)]
    run_example("interpolate", argv)
    assert Image.open(out).size == (6 * 8, 8)  # source, 4 interpolants, source
    (cells,) = grid_cells(out, rows=1, cols=6)
    sources = digits([0, 5])
    assert np.array_equal(cells[[0, -1]], sources)  # the dataset's images 0 and 5, at both ends
    pipe = DDPMPaperPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    a, b = (torch.from_numpy(s)[None] for s in sources)
    row = pipe.interpolate(a, b, t=10, num=4, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(cells[1:-1], to_8bit(row.images))  # what the pipeline method gives for --seed 0
    assert not np.array_equal(cells[1], cells[-2])  # λ moves the decoded image
    with pytest.raises(SystemExit, match="out of range"):
        run_example("interpolate", [*argv[:-2], "--index_a", "100000"])


def test_rate_distortion(model_dir, tmp_path, run_example):
    csv_path, png = tmp_path / "rd.csv", tmp_path / "rd.png"
    argv = ["--model", model_dir, *data_args(), "--num_images", "4", "--batch_size", "40"]
    run_example("rate_distortion", [*argv, "--output_csv", str(csv_path), "--output_plot", str(png)])
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["reverse_step"]) for r in rows] == list(range(1, T + 1))
    assert [int(r["timestep"]) for r in rows] == list(range(T - 1, -1, -1))
    rates = [float(r["rate_bpd"]) for r in rows]
    assert rates == sorted(rates) and float(rows[0]["distortion_rmse"]) > float(rows[-1]["distortion_rmse"])
    plot = np.asarray(Image.open(png).convert("L"))
    assert plot.shape[0] > 100 and plot.shape[1] > 100
    assert len(np.unique(plot)) > 10 and (plot < 128).mean() > 0.005  # axes, labels and a curve, not a blank page


@pytest.mark.parametrize("script", ["evaluate_nll", "interpolate", "rate_distortion"])
def test_images_unlike_the_networks_are_refused_unless_converted(model_dir, tmp_path, run_example, capsys, script):
    """32×32 colour images on the 8×8 grayscale digits network used to be converted without a word (CIFAR-10 on
    the digits model gave 15.45 bits/dim)."""
    write_image_folder(tmp_path / "colour", count=3, size=32, mode="RGB")
    argv = ["--model", model_dir, "--train_data_dir", tmp_path / "colour", "--split", "train"]
    argv += {
        "evaluate_nll": ["--num_images", "2", "--batch_size", "40", "--output_dir", tmp_path / "job"],
        "interpolate": ["--index_b", "1", "--t", "5", "--num", "2", "--output", tmp_path / "row.png"],
        "rate_distortion": ["--num_images", "2", "--batch_size", "40", "--output_dir", tmp_path / "job"],
    }[script]
    with pytest.raises(SystemExit, match="images are 32×32 colour, the network takes 8×8 grayscale"):
        run_example(script, argv)
    written = [*tmp_path.glob("job/*"), *tmp_path.glob("row.png")]
    assert not written
    capsys.readouterr()
    run_example(script, [*argv, "--convert_images"])
    assert "note: converting the dataset's 32×32 colour images to 8×8 grayscale (--convert_images)" in (
        capsys.readouterr().err
    )


OUTPUTS = {  # script: (arguments beyond --model, what it writes under outputs/SCRIPT/ when no output flag is given)
    "sample": (["--num_images", "2", "--num_inference_steps", "2"], {"samples.png"}),
    "progressive": (["--num_images", "1", "--every", "10"], {"progressive.png"}),
    "interpolate": ([*data_args(), "--t", "2", "--num", "2"], {"interpolation.png"}),
    "evaluate_nll": ([*data_args(), "--num_images", "1", "--batch_size", "40"], {"nll.json", "nll"}),
    "rate_distortion": ([*data_args(), "--num_images", "1", "--batch_size", "40"],
                        {"rate_distortion.csv", "rate_distortion.png"}),
}  # fmt: skip


@pytest.mark.parametrize("script", sorted(OUTPUTS))
def test_outputs_go_to_output_dir_not_the_working_directory(script, model_dir, tmp_path, run_example, monkeypatch):
    """Scripts used to write samples.png, nll.json and their shards into the working directory (the repo root)."""
    argv, files = OUTPUTS[script]
    monkeypatch.chdir(tmp_path)
    run_example(script, ["--model", model_dir, *argv])
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]
    assert {p.name for p in (tmp_path / "outputs" / script).iterdir()} == files
    run_example(script, ["--model", model_dir, *argv, "--output_dir", tmp_path / "mine"])
    assert {p.name for p in (tmp_path / "mine").iterdir()} == files
