"""The metrics of a set of samples against real test images, each computed the same way for the real-data floor:
FD in the evaluation classifier's features and in EfficientNet-Lite0's, class accuracy, precision / recall,
diversity and the saturated-pixel share."""

import hashlib
from pathlib import Path

import torch

from ..training.data import load_image_dataset, to_model_range, to_tensors
from .features import ClassifierFeatures, EfficientNetLite0Features
from .sample_cache import add_module
from .metrics import class_accuracy, diversity, frechet_distance_of, precision_recall, saturated_share


class Judge:
    """Features of the real test images, computed once, and the metrics of any image set against them."""

    def __init__(self, eval_classifier, real_test: torch.Tensor, use_efficientnet: bool, batch_size: int):
        self.classifier, self.batch_size = ClassifierFeatures(eval_classifier), batch_size
        self.efficientnet = EfficientNetLite0Features() if use_efficientnet else None
        self.real = self.features(real_test)
        self.fingerprint = fingerprint(eval_classifier, real_test, use_efficientnet)

    def features(self, images: torch.Tensor) -> dict:
        parts = {"own": [], "logits": [], "efficientnet": []}
        for batch in images.split(self.batch_size):
            own, logits = self.classifier(batch)
            parts["own"].append(own)
            parts["logits"].append(logits)
            if self.efficientnet is not None:
                parts["efficientnet"].append(self.efficientnet(batch))
        return {key: torch.cat(value).numpy() for key, value in parts.items() if value}

    def measure(self, images: torch.Tensor, labels) -> dict:
        fake = self.features(images)
        precision, recall = precision_recall(self.real["own"], fake["own"])
        predicted = fake["logits"].argmax(1)
        result = {
            "fd_own": frechet_distance_of(self.real["own"], fake["own"]),
            "precision": precision, "recall": recall,
            # diversity within the class each sample was asked for (or, unlabelled, the class it is seen as)
            "diversity": diversity(fake["own"], labels.numpy() if labels is not None else predicted),
            "saturated": saturated_share(images),
        }  # fmt: skip
        if labels is not None:
            result["accuracy"] = class_accuracy(fake["logits"], labels.numpy())
        if "efficientnet" in fake:
            result["fd_efficientnet"] = frechet_distance_of(self.real["efficientnet"], fake["efficientnet"])
        return result


def fingerprint(eval_classifier, real_test: torch.Tensor, use_efficientnet: bool) -> str:
    """sha256 of what a measurement depends on besides the samples: the evaluation classifier's weights, the real
    test images, whether EfficientNet-Lite0 is used, and the source of the metric code (a changed metric is a new
    judge)."""
    digest = hashlib.sha256(f"efficientnet={use_efficientnet}".encode())
    add_module(digest, "eval_classifier", eval_classifier)
    digest.update(real_test.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    here = Path(__file__).parent
    for module in ("judge.py", "metrics.py", "features.py"):
        digest.update((here / module).read_bytes())
    return digest.hexdigest()


def real_images(dataset_name: str, split: str, num_samples: int, seed: int, size: int, channels: int):
    """`num_samples` random images of a split, in [-1, 1], with labels; only those are decoded (all 60,000 of a
    training split took 5 s, most of a small evaluation's time)."""
    dataset = load_image_dataset(dataset_name, split=split)
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_samples]
    data = to_tensors(dataset.select(chosen.tolist()), size, channels)
    return to_model_range(data.images), data.labels
