"""Are a digits model's samples recognisable? A classifier trained on the same digits labels them.

    python examples/score_digits.py --model runs/digits --num_images 500

Prints (and writes as JSON to OUTPUT_DIR/scores.json) the share of samples the classifier labels with probability ≥ 0.9,
how many of the ten classes those confident samples cover, and the class histogram.
"""

import argparse
import json

import numpy as np
import torch
from cli import add_model_arguments, add_output_arguments, load_pipeline, output_path, positive_int
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from ddpm_hf.reporting import progress_bar

CONFIDENT = 0.9


def fit_classifier() -> CalibratedClassifierCV:
    """An RBF SVM with isotonic calibration on all 1,797 digits (pixels in [0, 1]), 96% held-out accuracy.

    For scale: it is ≥ 0.9 confident on 95% of the real digits and on 14% of uniform-noise images.
    """
    digits = load_digits()
    return CalibratedClassifierCV(SVC(), method="isotonic").fit(digits.data / 16.0, digits.target)


def fit_feature_network() -> MLPClassifier:
    """A one-hidden-layer network (128 ReLU units) trained to classify all 1,797 digits; its hidden layer is the
    feature space of `digit_features`, as Inception's pool layer is FID's."""
    digits = load_digits()
    return MLPClassifier(hidden_layer_sizes=(128,), max_iter=2000, random_state=0).fit(
        digits.data / 16.0, digits.target
    )


def digit_features(images: np.ndarray, network: MLPClassifier) -> np.ndarray:
    """Hidden-layer features [N, 128] of 8×8 grayscale images in [0, 1] ([N, 8, 8])."""
    return np.maximum(images.reshape(len(images), 64) @ network.coefs_[0] + network.intercepts_[0], 0.0)


def score_digits(images: np.ndarray, classifier: CalibratedClassifierCV | None = None) -> dict:
    """Score 8×8 grayscale images in [0, 1] ([N, 8, 8]): confident share, classes covered, histogram."""
    classifier = classifier or fit_classifier()
    probs = classifier.predict_proba(images.reshape(len(images), 64))
    labels, confident = probs.argmax(1), probs.max(1) >= CONFIDENT
    return {
        "num_images": len(images),
        "confident_fraction": float(confident.mean()),
        "classes_found": len(set(labels[confident].tolist())),
        "mean_max_probability": float(probs.max(1).mean()),
        "histogram": np.bincount(labels, minlength=10).tolist(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, seed=1234, device="cpu")  # 8×8 digits sample quickly on the CPU
    parser.add_argument("--num_images", type=positive_int, default=500)
    parser.add_argument("--batch_size", type=positive_int, default=250)
    parser.add_argument("--num_inference_steps", type=positive_int, default=1000)
    add_output_arguments(parser, "score_digits", output="scores.json")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args)
    pipe.set_progress_bar_config(disable=True)  # one bar over every batch's steps instead of one per batch
    images, batches = [], range(0, args.num_images, args.batch_size)
    with progress_bar(total=len(batches) * args.num_inference_steps, desc=f"sampling {args.num_images} images") as bar:

        def advance(pipe, i: int, t: int, tensors: dict) -> dict:
            bar.update(1)
            return tensors

        for start in batches:
            n = min(args.batch_size, args.num_images - start)
            generators = [torch.Generator().manual_seed(args.seed + start + i) for i in range(n)]
            out = pipe(
                batch_size=n,
                generator=generators,
                num_inference_steps=args.num_inference_steps,
                output_type="np",
                callback_on_step_end=advance,
            )
            images.append(out.images[..., 0])
    print("fitting the classifier on the 1,797 digits and scoring", flush=True)
    scores = score_digits(np.concatenate(images))
    print(json.dumps(scores))
    path = output_path(args, "output")
    path.write_text(json.dumps(scores, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
