"""The Inversion tab's actions: DDIM inversion and reconstruction, interpolation between two images, and SDEdit
variations, each from a dataset image or an upload brought to the training data's polarity."""

import gradio as gr
import torch

from guided_diffusers.training.data import fit_image

from .actions import dataset_images, generator, guidance_options, passes
from .controls import (MAX_INVERSION_STEPS, MAX_SEED, Steps, check_cost, class_index, number, one_run_per_visitor,
                       pick, refuse, request_folder, saved, user_facing)  # fmt: skip
from .pictures import dark_background, strip, to_data_polarity

SOURCES = ("dataset image", "upload")
POLARITIES = ("auto", "keep", "invert")
MAX_FRAMES, MAX_FIXED_POINT = 16, 5


def source_image(served, source, index, upload, polarity) -> tuple[torch.Tensor, str]:
    """The image to start from, (1, C, H, W) in [0, 1], and a sentence saying which it is."""
    if source not in SOURCES:
        raise refuse(f"source must be one of {', '.join(SOURCES)}; got {source!r}.")
    if source == "upload":
        if upload is None:
            raise refuse("source is 'upload' but no image was uploaded: upload one, or choose 'dataset image'.")
        upload = opened(upload)
        if polarity not in POLARITIES:
            raise refuse(f"upload polarity must be one of {', '.join(POLARITIES)}; got {polarity!r}.")
        images = served.images
        data_is_dark = True if images is None else dark_background_of(images)
        upload, done = to_data_polarity(upload, polarity, data_is_dark)
        config = served.pipe.image_config
        pixels = fit_image(upload, config.sample_size, config.in_channels)
        return torch.tensor(pixels).permute(2, 0, 1)[None].float() / 255, done
    images = dataset_images(served)
    index = number(index, "dataset image", 0, len(images) - 1, integer=True)
    return (images[index : index + 1] + 1) / 2, f"dataset image {index}"


def opened(upload):
    """An uploaded file (a path, as the upload control passes it) or an image, as a PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(upload, Image.Image):
        return upload
    try:
        with Image.open(upload) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError) as error:
        raise refuse(f"The upload is not an image that can be read (PNG, JPEG, ...): {error}") from None


def dark_background_of(images: torch.Tensor) -> bool:
    from PIL import Image

    mean = ((images.mean(0) + 1) * 127.5).clamp(0, 255).byte()  # the average training image's border
    return dark_background(Image.fromarray(mean.permute(1, 2, 0).squeeze(-1).numpy()))


def inversion_options(served, label, steps, guidance) -> dict:
    options = guidance_options(served, label, number(guidance, "CFG scale", 0, 20), 0)
    return dict(**options, num_inference_steps=number(steps, "DDIM steps", 2, MAX_INVERSION_STEPS, integer=True))


@user_facing
def inversion(models, model, source, index, upload, polarity, label, steps, guidance, iterations,
              progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """Invert one image with DDIM and sample it back: (x0 | x_T / 3 | reconstruction), with the error."""
    served = pick(models, model)
    image, described = source_image(served, source, index, upload, polarity)
    options = inversion_options(served, label, steps, guidance)
    iterations = number(iterations, "fixed-point iterations", 0, MAX_FIXED_POINT, integer=True)
    count = options["num_inference_steps"]
    check_cost(count * (2 + iterations), 1, passes(options))
    with one_run_per_visitor(request):
        pipe, steps = served.pipe, Steps(progress, request, 2 * count)
        latents = pipe.invert(image, fixed_point_iterations=iterations, callback_on_step_end=steps.callback, **options).latents
        rebuilt = pipe.reconstruct(latents, callback_on_step_end=steps.callback, **options)
    mse = ((rebuilt - image) * 2).pow(2).mean().item()
    noise = [] if served.latent else [(latents / 3).clamp(-1, 1)]  # a latent model's x_T is no picture
    picture = strip(torch.cat([image * 2 - 1, *noise, rebuilt * 2 - 1]))
    text = (f"- source: {described}\n- x_T: mean {latents.mean().item():.3f}, std {latents.std().item():.3f} "
            f"(Gaussian noise: 0, 1)\n- reconstruction MSE (pixels in [-1, 1]): {mse:.2e}")  # fmt: skip
    return saved(picture, request_folder(), "inversion"), text


@user_facing
def interpolation(models, model, source, index, upload, polarity, index_b, label, label_b, frames, steps,
                  progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """Invert two images, slerp their latents, interpolate the class embeddings: a strip and an animated GIF."""
    served = pick(models, model)
    start, described = source_image(served, source, index, upload, polarity)
    end, _ = source_image(served, "dataset image", index_b, None, polarity)
    frames = number(frames, "frames", 3, MAX_FRAMES, integer=True)
    steps = number(steps, "DDIM steps", 2, MAX_INVERSION_STEPS, integer=True)
    labels = class_index(served, label), class_index(served, label_b)
    if (labels[0] is None) != (labels[1] is None):
        raise refuse("Interpolation takes a class for both images, or for neither (both 'unconditional').")
    check_cost(steps, frames + 2, 1)
    with one_run_per_visitor(request):
        tracker = Steps(progress, request, 2 * steps)
        images = served.pipe.interpolate(start, end, num_frames=frames, start_label=labels[0], end_label=labels[1],
                                         num_inference_steps=steps, output_type="pt", callback_on_step_end=tracker.callback)  # fmt: skip
    folder = request_folder()
    cells = [strip(frame[None] * 2 - 1) for frame in images]
    gif = folder / "interpolation.gif"
    cells[0].save(gif, save_all=True, append_images=cells[1:] + cells[-2:0:-1], duration=120, loop=0)  # there and back
    return saved(strip(images * 2 - 1), folder, "interpolation"), str(gif), f"from {described} to dataset image {index_b}"


@user_facing
def variations(models, model, source, index, upload, polarity, label, strength, guidance, steps, seed,
               progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """SDEdit: noise the image to `strength` and denoise, optionally towards a class; the source, then 8 variations."""
    served = pick(models, model)
    image, described = source_image(served, source, index, upload, polarity)
    options = inversion_options(served, label, steps, guidance)
    strength = number(strength, "strength", 0.01, 1)
    seed = number(seed, "seed", 0, MAX_SEED, integer=True)
    count = options["num_inference_steps"]
    check_cost(count, 8, passes(options))
    with one_run_per_visitor(request):
        tracker = Steps(progress, request, max(1, int(count * strength)))
        images = served.pipe.variations(image.repeat(8, 1, 1, 1), strength=strength, generator=generator(seed),
                                        output_type="pt", callback_on_step_end=tracker.callback, **options)  # fmt: skip
    picture = strip(torch.cat([image, images]) * 2 - 1)
    return saved(picture, request_folder(), "variations"), f"- source: {described}\n- 8 variations at strength {strength:g}"
