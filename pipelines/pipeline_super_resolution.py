"""Diffusion super-resolution, a cascade's later stage (Ho et al. 2021, "Cascaded Diffusion Models"; Saharia et al.
2022, Imagen): a `UNet2DModel` that reads x_t beside the noise-augmented, upsampled low-resolution image and is told
the augmentation level (`pipelines.noise_augmentation`). It samples with the one denoising loop every pipeline runs,
with any of our samplers or diffusers'."""

from collections import Counter

import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..guiders import guider_for_call
from ..models.safetensors_only import SafetensorsOnly
from ..schedulers.validation import check_choice, check_range
from .denoising import Conditioning, denoise, plan, run
from .image_utils import images_to_model_range, latents_to_images
from .noise_augmentation import low_resolution_condition
from .pipeline_guided import GuidedPipelineOutput
from .samplers import THRESHOLDING_MODES, private_scheduler, set_distinct_timesteps, step_kwargs

DEFAULT_AUGMENTATION_LEVEL = 0.2  # imagen-pytorch's lowres_sample_noise_level; the shipped cascade's card measures others


class LowResolutionConditioned:
    """The super-resolution UNet as the denoising loop calls a network, model(x_t, t, **branch): its input is x_t and
    the augmented upsampled low-resolution image stacked along channels, its class label the augmentation level."""

    def __init__(self, unet: UNet2DModel):
        self.unet = unet

    def __call__(self, sample, timestep, condition, class_labels):
        return self.unet(torch.cat([sample, condition.to(sample.dtype)], dim=1), timestep, class_labels=class_labels)


def check_super_resolution_unet(unet) -> None:
    """A super-resolution UNet reads 2C channels (x_t and the condition), writes C (or 2C with learned variances)
    and embeds the augmentation level as a timestep."""
    config = unet.config
    if not isinstance(unet, UNet2DModel) or config.class_embed_type != "timestep" or config.in_channels % 2:
        raise ValueError("A super-resolution `unet` must be a UNet2DModel with `class_embed_type='timestep'` (the "
                         "augmentation level) and 2C input channels (x_t and the low-resolution image); got "
                         f"{type(unet).__name__} with class_embed_type={getattr(config, 'class_embed_type', None)!r} "
                         f"and {config.in_channels} input channels.")  # fmt: skip
    if config.out_channels not in (config.in_channels // 2, config.in_channels):
        raise ValueError(f"A super-resolution `unet` with {config.in_channels} input channels must write "
                         f"{config.in_channels // 2} (or {config.in_channels}, learned variances); it writes "
                         f"{config.out_channels}.")  # fmt: skip


class SuperResolutionPipeline(SafetensorsOnly, DiffusionPipeline):
    """(unet, scheduler): `low_resolution` x `low_resolution` images (default: half the UNet's size) ->
    `unet.config.sample_size` square images.

    `augmentation_level` a in [0, 1] noises the conditioning image, z_a = cos(pi a / 2) x + sin(pi a / 2) eps, as
    the UNet saw during training (noise-conditioning augmentation); 0 conditions on the clean image. Higher levels
    make the stage ignore more of the low-resolution image's artefacts (and detail)."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, low_resolution: int | None = None):
        super().__init__()
        check_super_resolution_unet(unet)
        size = unet.config.sample_size
        low_resolution = size // 2 if low_resolution is None else low_resolution  # default: a 2x stage
        if not isinstance(low_resolution, int) or not 1 <= low_resolution < size:
            raise ValueError(f"`low_resolution` must be an integer in [1, {size - 1}] (below the UNet's {size}px); "
                             f"got {low_resolution!r}.")  # fmt: skip
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(low_resolution=low_resolution)

    @property
    def channels(self) -> int:
        return self.unet.config.in_channels // 2

    def check_options(self, augmentation_level, num_inference_steps, thresholding, eta, prefix: str = "") -> None:
        """The stage's own arguments, checked before any network runs; a cascade checks them before its base runs,
        naming them as it does (`prefix` "super_resolution_": super_resolution_steps, super_resolution_eta, ...)."""
        check_range("augmentation_level", augmentation_level, low=0, high=1)
        check_range(f"{prefix}steps" if prefix else "num_inference_steps", num_inference_steps, low=1, integer=True)
        check_range(f"{prefix}eta", eta, low=0)
        if thresholding is not None:
            check_choice(f"{prefix}thresholding", thresholding, THRESHOLDING_MODES)

    @torch.inference_mode()
    def iterate(self, low_resolution: torch.Tensor, augmentation_level: float = DEFAULT_AUGMENTATION_LEVEL,
                num_inference_steps: int = 50, eta: float = 0.0, thresholding: str | None = None,
                dynamic_thresholding_ratio: float | None = None, generator=None, evaluations: Counter | None = None):  # fmt: skip
        """Super-resolve low-resolution images in [-1, 1], (N, C, low_resolution, low_resolution), step by step:
        yields (i, t, x_t, x0 prediction) after every step. x_T is drawn first, then the augmentation noise."""
        self.check_options(augmentation_level, num_inference_steps, thresholding, eta)
        scheduler = private_scheduler(self.scheduler, thresholding, dynamic_thresholding_ratio)
        batch, size = len(low_resolution), self.unet.config.sample_size
        shape = (batch, self.channels, size, size)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        levels = torch.full((batch,), float(augmentation_level), device=self.device)
        condition, level_labels = low_resolution_condition(low_resolution.to(self.device, self.unet.dtype), size,
                                                           levels, noise)  # fmt: skip
        conditioning = Conditioning(LowResolutionConditioned(self.unet),
                                    {"pred_cond": {"condition": condition, "class_labels": level_labels}},
                                    missing={"pred_uncond": "the super-resolution UNet has no unconditional branch"})  # fmt: skip
        guider = guider_for_call(None, None)  # the conditional prediction alone
        set_distinct_timesteps(scheduler, num_inference_steps, self.device)
        plan(guider, conditioning, scheduler, scheduler.timesteps)
        options = step_kwargs(scheduler, generator, eta, True)
        yield from denoise(guider, conditioning, scheduler, latents * scheduler.init_noise_sigma, scheduler.timesteps,
                           options, self.progress_bar, evaluations)  # fmt: skip

    @torch.inference_mode()
    def __call__(self, image, augmentation_level: float = DEFAULT_AUGMENTATION_LEVEL, num_inference_steps: int = 50,
                 eta: float = 0.0, thresholding: str | None = None, dynamic_thresholding_ratio: float | None = None,
                 generator=None, output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None):  # fmt: skip
        """Super-resolve `image`: PIL images, a NumPy (N, H, W, C) array or a torch (N, C, H, W) tensor with values
        in [0, 1] (what the pipelines output), each `low_resolution` pixels square with the UNet's channels."""
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        self.check_options(augmentation_level, num_inference_steps, thresholding, eta)
        low_resolution = images_to_model_range(image, self.channels, self.config.low_resolution)
        evaluations = Counter()
        steps = self.iterate(low_resolution, augmentation_level, num_inference_steps, eta, thresholding,
                             dynamic_thresholding_ratio, generator, evaluations)  # fmt: skip
        images = latents_to_images(run(self, steps, callback_on_step_end), output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, evaluations=dict(evaluations))
