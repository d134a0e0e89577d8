"""Turning sampled images into grids for people to look at (training logs, model cards, the app)."""

import numpy as np
from PIL import Image


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
