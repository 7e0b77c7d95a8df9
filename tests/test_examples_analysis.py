"""The analysis examples end to end on a tiny model trained for a few steps on the bundled digits."""

import csv
import json

import pytest
from PIL import Image

from tiny import train_tiny_digits

T = 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits_model")
    train_tiny_digits(steps=30, num_train_timesteps=T).save_pretrained(folder)
    return str(folder)


def data_args() -> list[str]:
    return ["--dataset_name", "sklearn-digits", "--split", "train"]


def test_evaluate_nll(model_dir, tmp_path, run_example, capsys):
    out = tmp_path / "nll.json"
    argv = ["--model", model_dir, *data_args(), "--num_images", "6", "--batch_size", "40", "--output", str(out)]
    report = run_example("evaluate_nll", argv)
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


def test_interpolate(model_dir, tmp_path, run_example):
    out = tmp_path / "interpolation.png"
    argv = ["--model", model_dir, *data_args(), "--index_b", "5", "--t", "10", "--num", "4", "--output", str(out)]
    run_example("interpolate", argv)
    assert Image.open(out).size == (6 * 8, 8)  # source, 4 interpolants, source
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
    assert Image.open(png).size[0] > 0
