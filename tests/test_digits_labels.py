"""Each split of the bundled sklearn digits carries its own images' labels.

The labels are matched to scikit-learn's own by pixel content, so a split holding the right images under the labels
of other rows (the first digits', say) fails, whatever the order of the rows.
"""

import io
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from ddpm_hf.data import DIGITS, digits_dataset, load_image_dataset


@pytest.fixture(scope="module")
def labels_by_pixels() -> dict[bytes, set[int]]:
    """scikit-learn's digits: each image's 0..16 values (as bytes) → the labels it carries."""
    digits = load_digits()
    found = defaultdict(set)
    for image, label in zip(digits.images, digits.target, strict=True):
        found[image.astype(np.uint8).tobytes()].add(int(label))
    return found


def sixteenths(image) -> bytes:
    """An 8-bit digit back on scikit-learn's 0..16 scale (the split stores round(v · 255/16), one level per v); the
    image as a PIL image or undecoded (its PNG bytes)."""
    if isinstance(image, dict):
        image = Image.open(io.BytesIO(image["bytes"]))
    return np.round(np.asarray(image, dtype=np.float64) * 16.0 / 255.0).astype(np.uint8).tobytes()


@pytest.mark.parametrize(("split", "size"), [("train", 1500), ("test", 297), ("train+test", 1797)])
def test_each_split_carries_its_own_images_labels(labels_by_pixels, split, size):
    for ds in (digits_dataset(split), load_image_dataset(DIGITS, split=split)[0]):
        assert len(ds) == size
        rows = ds[:]
        unknown = [i for i, image in enumerate(rows["image"]) if sixteenths(image) not in labels_by_pixels]
        assert unknown == []  # every image is one of scikit-learn's digits
        wrong = [
            i
            for i, (image, label) in enumerate(zip(rows["image"], rows["label"], strict=True))
            if label not in labels_by_pixels[sixteenths(image)]
        ]
        assert wrong == [], f"{len(wrong)} of the {split} split's labels are other images' (rows {wrong[:10]})"
        assert sorted(set(rows["label"])) == list(range(10))


def test_the_labels_are_informative(labels_by_pixels):
    """Almost every digit's pixels name one label only, so the test above tells a wrong label from a right one."""
    assert sum(len(labels) == 1 for labels in labels_by_pixels.values()) >= 0.99 * len(labels_by_pixels)
