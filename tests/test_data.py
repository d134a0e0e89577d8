"""Data loading: built-in offline datasets, the Hub code path (exercised offline on a local dataset folder), local
image folders, and the preprocessing to [-1, 1] tensors."""

import numpy as np
import pytest
import torch
from PIL import Image

from guided_diffusers.training.data import (
    FASHION_MNIST_DIR,
    fit_image,
    load_image_dataset,
    to_model_range,
    to_tensors,
)


def test_builtin_mnist_has_images_labels_and_class_names():
    dataset = load_image_dataset("mnist", split="test", max_samples=50)
    assert len(dataset) == 50
    assert dataset.features["label"].names == [str(d) for d in range(10)]
    data = to_tensors(dataset, resolution=28, channels=1)
    assert data.images.shape == (50, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the first MNIST test digits
    assert data.images.float().mean() > 10  # real strokes, not blanks


def test_builtin_mnist_train_split_is_the_full_60000():
    from guided_diffusers.training.data import _mnist_arrays

    images, labels = _mnist_arrays("train")
    assert images.shape == (60000, 28, 28) and np.bincount(labels).min() > 5000


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_builtin_fashion_mnist():
    dataset = load_image_dataset("fashion_mnist", split="test", max_samples=20)
    assert dataset.features["label"].names[-1] == "Ankle boot"
    assert to_tensors(dataset, 32, 3).images.shape == (20, 3, 32, 32)


def write_image_folder(root, count_per_class=3):
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(count_per_class):
            Image.fromarray(np.full((40, 30, 3), 60 * i, dtype=np.uint8)).save(root / label / f"{i}.png")


def test_local_image_folder_gives_labels_from_subfolders(tmp_path):
    write_image_folder(tmp_path / "pets")
    dataset = load_image_dataset(train_data_dir=str(tmp_path / "pets"))
    assert len(dataset) == 6 and dataset.features["label"].names == ["cats", "dogs"]
    assert to_tensors(dataset, 16, 3).images.shape == (6, 3, 16, 16)


def test_hub_code_path_loads_a_dataset_by_name_offline(tmp_path, monkeypatch):
    """`load_dataset(name)` is what online users get for a Hub id; a local dataset folder takes the same path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_image_folder(tmp_path / "repo")
    dataset = load_image_dataset(str(tmp_path / "repo"), max_samples=4, cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 4 and "image" in dataset.features


def test_unknown_dataset_names_the_builtins(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="Built-in offline datasets: mnist, fashion_mnist"):
        load_image_dataset("no-such-user/no-such-dataset", cache_dir=str(tmp_path))


def test_exactly_one_source_and_a_real_folder():
    with pytest.raises(ValueError, match="exactly one of `dataset_name` and `train_data_dir`"):
        load_image_dataset()
    with pytest.raises(ValueError, match="is not a directory"):
        load_image_dataset(train_data_dir="/no/such/folder")


def test_fit_image_pads_small_and_crops_large_images():
    digit = Image.fromarray(np.full((28, 28), 255, dtype=np.uint8))
    padded = fit_image(digit, 32, 1)
    assert padded.shape == (32, 32, 1) and padded[0, 0, 0] == 0 and padded[16, 16, 0] == 255
    wide = Image.fromarray(np.zeros((40, 80, 3), dtype=np.uint8))
    assert fit_image(wide, 20, 3).shape == (20, 20, 3)
    with pytest.raises(ValueError, match="`channels` must be 1"):
        fit_image(digit, 28, 2)


def test_to_model_range_maps_to_minus_one_one_and_flips_half():
    images = torch.arange(4 * 2, dtype=torch.uint8).reshape(4, 1, 1, 2) * 30
    images[:, :, :, 0], images[:, :, :, 1] = 0, 255
    scaled = to_model_range(images)
    assert scaled.min() == -1 and scaled.max() == 1
    flipped = to_model_range(images.repeat(50, 1, 1, 1), random_flip=True, generator=torch.Generator().manual_seed(0))
    share = (flipped[:, 0, 0, 0] == 1).float().mean().item()
    assert 0.3 < share < 0.7
