"""Images in and out of the pipelines: user images into the model's range, samples into grids for people to look
at (training logs, model cards, the app)."""

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from .inference import ordinary


def images_to_model_range(images, channels: int, size: int) -> torch.Tensor:
    """What the pipelines output, back into the model's range: PIL images (one or a list), a NumPy (N, H, W, C) array
    or a torch (N, C, H, W) tensor with values in [0, 1] -> float (N, C, H, W) in [-1, 1], x = 2 p - 1.
    Raises ValueError unless the images have the model's `channels` and `size` x `size` pixels."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and images and all(isinstance(image, Image.Image) for image in images):
        mode = "L" if channels == 1 else "RGB"
        images = np.stack([np.asarray(image.convert(mode), dtype=np.float32) / 255 for image in images])
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.asarray(images, dtype=np.float32))
        images = images[..., None] if images.ndim == 3 and channels == 1 and images.shape[-1] != 1 else images
        images = (images[None] if images.ndim == 3 else images).permute(0, 3, 1, 2)
    if not torch.is_tensor(images):
        raise ValueError(f"`images` must be PIL images, a NumPy (N, H, W, C) array or a torch (N, C, H, W) tensor; "
                         f"got {type(images).__name__}.")  # fmt: skip
    images = images[None] if images.ndim == 3 else images
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size):
        raise ValueError(f"`images` must be {channels}x{size}x{size} (channels x height x width) for this model; "
                         f"got shape {tuple(images.shape)}.")  # fmt: skip
    if images.numel() == 0 or not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("`images` must have finite values in [0, 1], as the pipelines output them.")
    return images.float() * 2 - 1


def make_grid(images: np.ndarray, rows: int, scale: int = 1, padding: int = 1) -> Image.Image:
    """(N, H, W, C) floats in [0, 1] -> one PIL image of `rows` rows, upscaled by an integer `scale` with nearest
    neighbour (keeps 28x28 digits crisp) and separated by `padding` grey pixels."""
    count, height, width, channels = images.shape
    columns = -(-count // rows)
    cell_h, cell_w = height * scale + padding, width * scale + padding
    canvas = np.full((rows * cell_h + padding, columns * cell_w + padding, channels), 0.5, dtype=np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        big = image.repeat(scale, axis=0).repeat(scale, axis=1)
        top, left = padding + row * cell_h, padding + column * cell_w
        canvas[top : top + height * scale, left : left + width * scale] = big
    pixels = (canvas.clip(0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)


def latents_to_images(latents: torch.Tensor, output_type: str):
    """[-1, 1] -> [0, 1] images as PIL, NumPy (N, H, W, C) or torch (N, C, H, W), as ordinary tensors."""
    images = ordinary((latents / 2 + 0.5).clamp(0, 1))
    if output_type == "pt":
        return images
    array = images.cpu().permute(0, 2, 3, 1).float().numpy()
    return array if output_type == "np" else DiffusionPipeline.numpy_to_pil(array)
