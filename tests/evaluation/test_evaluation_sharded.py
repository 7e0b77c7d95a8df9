"""examples/evaluate.py at scale, on a CPU: split over processes, written shard by shard, resumed after a SIGKILL.

Real processes throughout: two gloo processes under `accelerate launch` against one plain `python` process, and a
run killed with SIGKILL mid-way then started again with the same command. Every subprocess (and every run in this
process) uses one thread, so that the float results are comparable bit for bit.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import processes
import run_examples
from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
from ddpm_hf.evaluation import FIDStatistics, SampleStore, Shard, ShardStore, StoreDamagedError, StoreMismatchError
from tiny import tiny_pipeline
from tiny_inception import TinyWithHead, save_tiny

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
LAUNCH += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
NUM_SAMPLES, SHARD, NLL_IMAGES = 16, 2, 4


@contextlib.contextmanager
def one_thread_here():
    """Runs in this process compute like the one-thread subprocesses (and do not fight the machine's other work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    with one_thread_here():
        yield


def run_main(name: str, argv: list) -> object:
    """examples/NAME.py's main(argv), in this process."""
    return run_examples.run(name, [str(a) for a in argv])


def start(commands: list[tuple[str, list]], log: Path, num_processes: int = 1) -> subprocess.Popen:
    """examples/NAME.py mains run one after another in one subprocess (`tests/support/run_examples.py`), on
    `num_processes` processes; output goes to `log` (a file: a pipe nobody reads could fill and block the run)."""
    argv = [a for i, (name, args) in enumerate(commands) for a in ([":::"] if i else []) + [name, *map(str, args)]]
    if len(commands) == 1 and num_processes == 1:  # the plain way: python examples/NAME.py ARGS
        head, argv = [sys.executable, str(ROOT / "examples" / f"{argv[0]}.py")], argv[1:]
    else:
        runner = str(ROOT / "tests" / "support" / "run_examples.py")
        head = [*(LAUNCH if num_processes > 1 else [sys.executable]), runner]
    with open(log, "w") as out:
        return processes.start([*head, *argv], cwd=ROOT, env=ENV, stdout=out, stderr=out)


def finish(process: subprocess.Popen, log: Path) -> str:
    assert processes.wait(process, 300, output=log.read_text()) == 0, log.read_text()[-4000:]
    return log.read_text()


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def shard_folders(samples: Path) -> list[Path]:
    return sorted(p for p in samples.iterdir() if re.fullmatch(r"\d{8}-\d{8}", p.name)) if samples.is_dir() else []


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model (T = 100), a tiny Inception, digits reference statistics (with features), evaluation arguments."""
    root = tmp_path_factory.mktemp("sharded")
    pipe = tiny_pipeline()
    DDPMPaperPipeline(unet=pipe.unet, scheduler=DDPMPaperScheduler(num_train_timesteps=100)).save_pretrained(
        root / "model"
    )
    weights = save_tiny(TinyWithHead(), root)
    stats_argv = ["--dataset_name", "sklearn-digits", "--num_images", 40, "--batch_size", 6, "--num_workers", 0]
    stats_argv += ["--weights", weights, "--device", "cpu", "--save_features"]
    argv = ["--model", root / "model", "--num_samples", NUM_SAMPLES, "--batch_size", SHARD, "--device", "cpu"]
    argv += ["--num_inference_steps", 20, "--precision", "fp32", "--grid_size", 4, "--is_splits", 2]
    argv += ["--reference", root / "ref.npz", "--inception_weights", weights]
    argv += ["--metrics", "fid", "is", "precision_recall", "nll", "--nll_dataset_name", "sklearn-digits"]
    argv += ["--nll_num_images", NLL_IMAGES, "--nll_batch_size", 100, "--convert_images"]  # grey digits, RGB net
    analytic_argv = [
        "--model",
        root / "model",
        "--dataset_name",
        "sklearn-digits",
        "--convert_images",
        "--device",
        "cpu",
    ]
    analytic_argv += ["--num_images", 6, "--batch_size", 50, "--shard_size", 2, "--grid_size", 2, "--grid_steps", 5]
    return {"root": root, "argv": argv, "stats_argv": stats_argv, "weights": weights, "analytic_argv": analytic_argv}


@pytest.fixture(scope="module")
def runs(setup):
    """The reference statistics and the evaluation on 1 process (this one) and on 2 (one launch), side by side."""
    root, argv = setup["root"], setup["argv"]
    with one_thread_here():
        run_main("fid_stats", [*setup["stats_argv"], "--output", root / "ref.npz", "--output_dir", root / "ref-one"])
        commands = [
            ("fid_stats", [*setup["stats_argv"], "--output", root / "ref2.npz", "--output_dir", root / "ref-two"]),
            ("evaluate", [*argv, "--output_dir", root / "two"]),
            ("analytic_variance", [*setup["analytic_argv"], "--output_dir", root / "analytic-two"]),
        ]
        two = start(commands, root / "two.log", num_processes=2)
        run_main("evaluate", [*argv, "--output_dir", root / "one"])
        run_main("analytic_variance", [*setup["analytic_argv"], "--output_dir", root / "analytic-one"])
        log = finish(two, root / "two.log")
    return {"log": log, **{k: json.loads((root / k / "metrics.json").read_text()) for k in ("one", "two")}}


def test_two_processes_make_what_one_makes(setup, runs):
    root = setup["root"]
    one, two = runs["one"], runs["two"]
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    # The same sample files, byte for byte (PNGs, features, manifest), and the same per-image bounds ...
    assert digest(root / "one" / "samples") == digest(root / "two" / "samples")
    assert len(shard_folders(root / "two" / "samples")) == NUM_SAMPLES // SHARD
    assert digest(root / "one" / "nll") == digest(root / "two" / "nll")
    # ... so the same statistics and metrics, to the last bit.
    assert one["metrics"] == two["metrics"]
    assert set(one["metrics"]) == {
        "fid",
        "inception_score",
        "inception_score_std",
        "precision",
        "recall",
        "nll_bits_per_dim",
        "nll_bits_per_dim_stderr",
    }
    assert one["measurements"] == two["measurements"]
    assert one["measurements"]["fid"]["num_samples"] == NUM_SAMPLES
    assert one["measurements"]["precision"]["features"] == "inception"
    assert one["measurements"]["nll_bits_per_dim"]["num_images"] == NLL_IMAGES
    assert two["samples_made"] == NUM_SAMPLES and two["nll_images_made"] == NLL_IMAGES
    # One progress bar per job (fid_stats', evaluate's, then analytic_variance's), on the main process, counting
    # both processes' images (samples and bounds) to the end; no bar per batch, per denoising loop or per process.
    bars = re.findall(r"(\w[\w /]*): +\d+%\|[^|]*\| (\d+)/(\d+)", runs["log"])
    totals = {"inception features": 40, "evaluation": NUM_SAMPLES + NLL_IMAGES, "Γ_t": 6}
    assert {(name, int(of)) for name, _, of in bars} == set(totals.items())
    for name, total in totals.items():
        assert max(int(done) for bar, done, _ in bars if bar == name) == total
    assert "Loading pipeline components" not in runs["log"]


def test_stored_sample_i_is_the_pipelines_image_for_seed_plus_i_in_every_shard(setup, runs):
    """Image i of the store is drawn with seed + i (global index) whatever shard or process made it: a seed restarted
    at each shard would store duplicates, and FID would be computed on them. Checked by content, in every shard."""
    root = setup["root"]
    pipe = DDPMPaperPipeline.from_pretrained(root / "model")
    pipe.set_progress_bar_config(disable=True)
    folders = shard_folders(root / "one" / "samples")
    assert [f.name for f in folders] == [f"{i:08d}-{i + SHARD:08d}" for i in range(0, NUM_SAMPLES, SHARD)]
    stored = {}
    for folder in folders:
        for png in sorted(folder.glob("*.png")):
            stored[int(png.stem)] = np.asarray(Image.open(png))
    assert sorted(stored) == list(range(NUM_SAMPLES))
    for start in range(0, NUM_SAMPLES, SHARD):  # the batches evaluate.py samples (--batch_size SHARD, --seed 0)
        generators = [torch.Generator().manual_seed(i) for i in range(start, start + SHARD)]
        out = pipe(batch_size=SHARD, generator=generators, num_inference_steps=20, precision="fp32", output_type="np")
        expected = np.round(out.images * 255).clip(0, 255).astype(np.uint8)  # [N, H, W, C], as the PNGs hold them
        for j in range(SHARD):
            assert np.array_equal(stored[start + j], expected[j]), f"sample {start + j}"
    assert len({image.tobytes() for image in stored.values()}) == NUM_SAMPLES  # no two alike


def test_analytic_variance_on_two_processes_is_the_one_process_estimate(setup, runs):
    """Γ from two processes (images dealt by shard) is the one-process Γ bit for bit, and so is the folder's config."""
    root = setup["root"]
    one, two = (json.loads((root / f"analytic-{n}" / "gamma.json").read_text()) for n in ("one", "two"))
    assert one["gamma"] == two["gamma"] and one["stderr"] == two["stderr"] and one["num_images"] == 6
    configs = [
        json.loads((root / f"analytic-{n}" / "scheduler" / "scheduler_config.json").read_text()) for n in ("one", "two")
    ]
    assert configs[0]["analytic_gamma"] == configs[1]["analytic_gamma"] and configs[0]["variance_type"] == "analytic"
    assert "Γ_t" in runs["log"]  # the progress bar, on the main process


def test_reference_statistics_on_two_processes(setup, runs):
    """fid_stats.py deals its batches to the processes: the same features, and sums merged to float64 rounding."""
    root = setup["root"]
    one, two = FIDStatistics.load(root / "ref.npz"), FIDStatistics.load(root / "ref2.npz")
    assert (one.num_images, two.num_images) == (40, 40) and one.extractor == two.extractor == "inception"
    np.testing.assert_allclose(two.mu, one.mu, rtol=1e-12, atol=0)
    np.testing.assert_allclose(two.sigma, one.sigma, rtol=1e-10, atol=1e-14)
    assert (root / "ref.features.npy").read_bytes() == (root / "ref2.features.npy").read_bytes()
    features = np.load(root / "ref.features.npy")
    direct = FIDStatistics.from_features(features)  # np.mean / np.cov of the whole array
    np.testing.assert_allclose(one.mu, direct.mu, rtol=1e-12)
    np.testing.assert_allclose(one.sigma, direct.sigma, rtol=1e-9, atol=1e-12)


def test_killed_run_resumes_to_the_same_metrics(setup, runs, one_thread, run_example):
    root, argv = setup["root"], setup["argv"]
    out = root / "killed"
    process = start([("evaluate", [*argv, "--output_dir", out])], root / "killed.log")
    deadline = time.monotonic() + 120
    while len(shard_folders(out / "samples")) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    finished = shard_folders(out / "samples")
    assert 2 <= len(finished) < NUM_SAMPLES // SHARD
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for folder in finished for p in folder.iterdir()}
    # What a kill mid-shard leaves: a half-written shard, which must not count as finished.
    half = out / "samples.partial" / "00000014-00000016.12345"
    half.mkdir(parents=True, exist_ok=True)
    shutil.copy(next(finished[0].glob("*.png")), half / "00000014.png")

    result = run_example("evaluate", [*argv, "--output_dir", out])
    assert result["metrics"] == runs["one"]["metrics"]  # as the uninterrupted run, to the last bit
    assert result["samples_made"] == NUM_SAMPLES - SHARD * len(finished)
    assert result["samples_reused"] == SHARD * len(finished)
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for folder in finished for p in folder.iterdir()}
    assert after == before  # no finished image was sampled, nor any of its features computed, again
    assert digest(out / "samples") == digest(root / "one" / "samples")
    assert not (out / "samples.partial").exists() or not any((out / "samples.partial").iterdir())

    # A changed model, seed, step count, precision or shard size is refused before anything is sampled.
    other_model = root / "other_model"
    tiny_pipeline(seed=1).save_pretrained(other_model)
    changes = {
        "model_weights_sha256": ["--model", other_model],
        "seed": ["--seed", 1],
        "num_inference_steps": ["--num_inference_steps", 19],
        "precision": ["--precision", "bf16"],
        "shard_size": ["--shard_size", 4],
    }
    for key, change in changes.items():
        with pytest.raises(SystemExit, match=f"{key}: .* there, .* now"):
            run_example("evaluate", [*argv, "--output_dir", out, *change])
    assert digest(out / "samples") == digest(root / "one" / "samples")


def test_evaluate_nll_shards_resume_and_refuse(tmp_path, one_thread, run_example):
    """evaluate_nll.py: each image's bound from a generator seeded seed + i; a rerun bounds nothing again."""
    from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler
    from ddpm_hf.data import ImageDataset, load_image_dataset
    from tiny import tiny_unet

    pipe = DDPMPaperPipeline(unet=tiny_unet(), scheduler=DDPMPaperScheduler(num_train_timesteps=20))
    pipe.save_pretrained(tmp_path / "model")
    argv = ["--model", tmp_path / "model", "--dataset_name", "sklearn-digits", "--num_images", 5, "--batch_size", 8]
    argv += ["--shard_size", 2, "--output_dir", tmp_path / "out", "--device", "cpu", "--seed", 3, "--convert_images"]
    report = run_example("evaluate_nll", argv)
    assert (report["num_images"], report["images_made"], report["num_timesteps"]) == (5, 5, 20)

    ds, column = load_image_dataset("sklearn-digits", split="test")  # evaluate_nll.py's default --split
    images = ImageDataset(ds, column, 8, 3)
    pipe.set_progress_bar_config(disable=True)
    totals = [
        pipe.bits_per_dim(images[i][None], generator=torch.Generator().manual_seed(3 + i), batch_size=8).total.item()
        for i in range(5)
    ]
    assert report["bpd"] == pytest.approx(np.mean(totals), rel=1e-12)
    assert report["bpd_stderr"] == pytest.approx(np.std(totals, ddof=1) / np.sqrt(5), rel=1e-9)
    assert sorted(p.name for p in (tmp_path / "out" / "nll").iterdir() if p.is_dir() and p.name[0] != ".") == [
        "00000000-00000002",
        "00000002-00000004",
        "00000004-00000005",
    ]

    again = run_example("evaluate_nll", argv)
    assert again["images_made"] == 0 and again["bpd"] == report["bpd"] and again["terms_bpd"] == report["terms_bpd"]
    more = run_example("evaluate_nll", [*argv[:5], 7, *argv[6:]])  # two more images: only those are bounded
    assert more["images_made"] == 2 and more["num_images"] == 7
    with pytest.raises(SystemExit, match="batch_size: 8 there, 16 now"):  # other noise chunks: another estimate
        run_example("evaluate_nll", [*argv[:7], 16, *argv[8:]])


# --- the store on its own --------------------------------------------------------------------------------------


def test_store_plans_only_what_is_missing(tmp_path):
    store = ShardStore(tmp_path / "s", {"kind": "test", "seed": 0}, shard_size=4)
    store.check()
    store.create()
    assert store.missing(10) == [Shard(0, 4), Shard(4, 8), Shard(8, 10)]
    for shard in store.missing(10):
        store.write(shard, {"x": np.arange(shard.start, shard.end, dtype=np.float32)[:, None] * [1.0, -1.0]})
    assert store.missing(10) == [] and store.covering(10) == [Shard(0, 4), Shard(4, 8), Shard(8, 10)]
    # Asking for more images later adds shards after the short last one, on the same grid.
    assert store.missing(17) == [Shard(10, 12), Shard(12, 16), Shard(16, 17)]
    # Reading across shards, in blocks, sees one array; a shorter count stops inside a shard.
    array = store.array("x", 9)
    assert len(array) == 9 and np.array_equal(array[2:7][:, 0], np.arange(2, 7))
    assert np.array_equal(np.concatenate(list(store.blocks("x", 9)))[:, 1], -np.arange(9))
    with pytest.raises(FileNotFoundError, match="lacks images from 10"):
        store.covering(12)
    # A shard being written lives in the .partial folder and is not finished until renamed whole.
    (store.partial / "00000010-00000012.1").mkdir(parents=True)
    assert Shard(10, 12) not in store.finished() and store.missing(12) == [Shard(10, 12)]
    reopened = ShardStore(tmp_path / "s", {"kind": "test", "seed": 0})
    reopened.check()
    reopened.create()  # clears what a killed run left half-written
    assert reopened.shard_size == 4 and not store.partial.exists()


def test_store_refuses_other_runs_and_strays(tmp_path):
    store = ShardStore(tmp_path / "s", {"kind": "test", "seed": 0, "steps": [1, 2]}, shard_size=4)
    store.create()
    ShardStore(tmp_path / "s", {"kind": "test", "seed": 0, "steps": (1, 2)}).check()  # tuples read back as lists
    with pytest.raises(StoreMismatchError, match="seed: 0 there, 1 now"):
        ShardStore(tmp_path / "s", {"kind": "test", "seed": 1, "steps": [1, 2]}).check()
    with pytest.raises(StoreMismatchError, match="shard_size: 4 there, 8 now"):
        ShardStore(tmp_path / "s", {"kind": "test", "seed": 0, "steps": [1, 2]}, shard_size=8).check()
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "mine.png").write_bytes(b"not ours")
    with pytest.raises(StoreMismatchError, match=r"no manifest\.json"):
        ShardStore(tmp_path / "pngs", {"kind": "test"}, shard_size=4).check()


def test_damaged_stores_are_named_and_damaged_shards_made_again(tmp_path, capsys):
    """A truncated manifest.json was a bare JSONDecodeError; a truncated PNG or missing image went unnoticed."""
    store = SampleStore(tmp_path / "s", {"kind": "test"}, shard_size=2)
    store.create()
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    for shard in (Shard(0, 2), Shard(2, 4)):
        store.write_samples(shard, images[shard.start : shard.end], {"f": np.zeros((2, 3), np.float32)})
    png = tmp_path / "s" / "00000002-00000004" / "00000003.png"
    png.write_bytes(png.read_bytes()[:-20])
    assert "00000003.png is truncated" in store.damage(Shard(2, 4)) and store.damage(Shard(0, 2)) is None
    store.create()  # as every run starts: the damaged shard is moved aside, named, and missing again
    assert "00000003.png is truncated (it has no PNG end marker); shard 00000002-00000004 moved to" in (
        capsys.readouterr().err
    )
    assert store.missing(4) == [Shard(2, 4)] and len(list((tmp_path / "s.damaged").iterdir())) == 1
    (tmp_path / "s" / "00000000-00000002" / "00000001.png").unlink()
    assert store.damage(Shard(0, 2)).endswith("00000001.png is missing")
    manifest = tmp_path / "s" / "manifest.json"
    manifest.write_text(manifest.read_text()[:10])
    with pytest.raises(StoreDamagedError, match=r"manifest\.json is not readable JSON .*Restore the file"):
        SampleStore(tmp_path / "s", {"kind": "test"}).check()


def test_sample_store_pngs_round_trip(tmp_path):
    store = SampleStore(tmp_path / "samples", {"kind": "samples"}, shard_size=3)
    store.create()
    gray = torch.randint(0, 256, (3, 1, 5, 5), dtype=torch.uint8)
    store.write_samples(Shard(0, 3), gray, {"f": np.ones((3, 2), np.float32)})
    assert torch.equal(store.images(Shard(0, 3)), gray)
    rgb = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    store.write_samples(Shard(3, 5), rgb, {})
    assert torch.equal(store.images(Shard(3, 5)), rgb)
    with pytest.raises(ValueError, match="rows"):
        store.write_samples(Shard(5, 6), rgb[:1], {"f": np.ones((2, 2))})
