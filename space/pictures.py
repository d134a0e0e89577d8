"""Samples as pictures people can see: square-ish grids upscaled with nearest neighbour, rows labelled with their
setting, and uploads brought to the data's polarity."""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from guided_diffusers.pipelines.image_utils import latents_to_images, make_grid

COLUMNS = 4  # batch 8 -> a 2x4 grid
LABEL_WIDTH = 150


def scale_for(size: int) -> int:
    """Nearest-neighbour factor that shows a size x size image about 112 px wide (28 px digits at 4x)."""
    return max(1, round(112 / size))


def grid(images: torch.Tensor, columns: int = COLUMNS) -> Image.Image:
    """A [-1, 1] batch (N, C, H, W) as one grid of `columns` columns."""
    array = latents_to_images(images.float().cpu(), "np")
    rows = -(-len(array) // min(columns, len(array)))
    return make_grid(array, rows=rows, scale=scale_for(array.shape[1]))


def strip(images: torch.Tensor) -> Image.Image:
    """A [-1, 1] batch as one row."""
    return grid(images, columns=len(images))


def labelled_rows(rows: list[torch.Tensor], labels: list[str]) -> Image.Image:
    """One strip per setting, stacked, each with its label written in a margin on its left."""
    strips = [strip(row).convert("RGB") for row in rows]
    font = ImageFont.load_default(size=22)
    margin = max(LABEL_WIDTH, *(label_width(label, font) + 16 for label in labels))  # no label runs into a picture
    canvas = Image.new("RGB", (margin + max(s.width for s in strips), sum(s.height for s in strips)), "white")
    draw = ImageDraw.Draw(canvas)
    top = 0
    for picture, label in zip(strips, labels):
        canvas.paste(picture, (margin, top))
        draw.multiline_text((8, top + picture.height // 2), label, fill="black", font=font, anchor="lm")
        top += picture.height
    return canvas


def label_width(label: str, font) -> int:
    left, _, right, _ = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), label, font=font)
    return right - left


def with_headroom(image: Image.Image) -> Image.Image:
    """A white band on top, where the app draws the picture's label and toolbar, so that they cover no sample."""
    band = max(24, image.width // 16)
    framed = Image.new(image.mode, (image.width, image.height + band), "white")
    framed.paste(image, (0, band))
    return framed


def dark_background(image: Image.Image) -> bool:
    """Whether an image's border (where the background is) is darker than mid-grey."""
    pixels = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(border.mean()) < 128


def to_data_polarity(image: Image.Image, polarity: str, data_is_dark: bool) -> tuple[Image.Image, str]:
    """An upload in the data's polarity (MNIST and Fashion-MNIST are light on a black background): "auto" inverts
    it when its border's brightness is the opposite of the data's, "invert" always, "keep" never. Returns the
    image and a sentence saying what was done."""
    flip = {"invert": True, "keep": False}.get(polarity)
    if flip is None:
        flip = dark_background(image) != data_is_dark
    if not flip:
        return image, "upload used as is"
    inverted = ImageOps.invert(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
    return inverted, "upload inverted (dark on light -> light on dark, as the training data)" if data_is_dark else \
        "upload inverted (to the training data's dark on light)"  # fmt: skip
