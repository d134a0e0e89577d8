"""Diffusion super-resolution, a cascade's later stage (Ho et al. 2021, "Cascaded Diffusion Models"; Saharia et al.
2022, Imagen): a UNet that reads x_t beside the noise-augmented, upsampled low-resolution image and is told the
augmentation level (`pipelines.noise_augmentation`). A class-conditioned stage (a `UNet2DConditionModel` trained
with label dropout) is also told the class, so classifier-free guidance, or any guider of ours that needs only the
conditional and unconditional predictions, applies to this stage too. It samples with the one denoising loop every
pipeline runs, with any of our samplers or diffusers'."""

from collections import Counter

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..guiders import Guider, guider_for_call
from ..models.safetensors_only import SafetensorsOnly
from ..schedulers.validation import check_choice, check_range
from .denoising import Conditioning, denoise, plan, run
from .image_utils import images_to_model_range, latents_to_images
from .noise_augmentation import low_resolution_condition, stage_inputs
from .pipeline_guided import GuidedPipelineOutput, class_indices
from .samplers import THRESHOLDING_MODES, private_scheduler, set_distinct_timesteps, step_kwargs

DEFAULT_AUGMENTATION_LEVEL = 0.2  # imagen-pytorch's lowres_sample_noise_level; the shipped cascade's card measures others


class LowResolutionConditioned:
    """The super-resolution UNet as the denoising loop calls a network, model(x_t, t, **branch): its input is x_t and
    the augmented upsampled low-resolution image stacked along channels; the levels (and class labels) reach it as
    its kind reads them (`noise_augmentation.stage_inputs`)."""

    def __init__(self, unet):
        self.unet = unet

    def __call__(self, sample, timestep, condition, levels, class_labels=None):
        inputs = stage_inputs(self.unet.config, levels, class_labels)
        return self.unet(torch.cat([sample, condition.to(sample.dtype)], dim=1), timestep, **inputs)


def check_super_resolution_unet(unet) -> None:
    """A super-resolution UNet reads 2C channels (x_t and the condition) and writes C (or 2C with learned
    variances). A UNet2DModel embeds the augmentation level as a class (`class_embed_type="timestep"`); a
    UNet2DConditionModel through `timestep_cond` (`time_cond_proj_dim`), its class embedding free for classes."""
    config = unet.config
    plain = isinstance(unet, UNet2DModel) and config.class_embed_type == "timestep"
    conditioned = (isinstance(unet, UNet2DConditionModel) and bool(config.time_cond_proj_dim)
                   and config.class_embed_type is None and not cross_attention(config))  # fmt: skip
    if not (plain or conditioned) or config.in_channels % 2:
        raise ValueError("A super-resolution `unet` must read 2C input channels (x_t and the low-resolution image) and "
                         "be told the augmentation level: a UNet2DModel with `class_embed_type='timestep'`, or a "
                         "UNet2DConditionModel with `time_cond_proj_dim` set, no `class_embed_type` and no "
                         f"cross-attention blocks; got {type(unet).__name__} with class_embed_type="
                         f"{getattr(config, 'class_embed_type', None)!r}, time_cond_proj_dim="
                         f"{getattr(config, 'time_cond_proj_dim', None)!r} and {config.in_channels} input channels.")  # fmt: skip
    if config.out_channels not in (config.in_channels // 2, config.in_channels):
        raise ValueError(f"A super-resolution `unet` with {config.in_channels} input channels must write "
                         f"{config.in_channels // 2} (or {config.in_channels}, learned variances); it writes "
                         f"{config.out_channels}.")  # fmt: skip


def cross_attention(config) -> bool:
    """Whether a UNet2DConditionModel config has blocks that attend to encoder states (a text-conditioned stage)."""
    blocks = [*config.down_block_types, *config.up_block_types, config.mid_block_type or ""]
    return any("CrossAttn" in block for block in blocks)


class SuperResolutionPipeline(SafetensorsOnly, DiffusionPipeline):
    """(unet, scheduler): `low_resolution` x `low_resolution` images (default: half the UNet's size) ->
    `unet.config.sample_size` square images.

    `augmentation_level` a in [0, 1] noises the conditioning image, z_a = cos(pi a / 2) x + sin(pi a / 2) eps, as
    the UNet saw during training (noise-conditioning augmentation); 0 conditions on the clean image. Higher levels
    make the stage ignore more of the low-resolution image's artefacts (and detail).

    A class-conditioned stage (`unet.config.num_class_embeds` set; `null_class_label`, its last embedding, the
    label-dropout class) also takes `class_labels` and classifier-free guidance (`guidance_scale` or a `guider`)."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel | UNet2DConditionModel, scheduler: SchedulerMixin,
                 low_resolution: int | None = None, null_class_label: int | None = None,
                 class_names: list[str] | None = None):  # fmt: skip
        super().__init__()
        check_super_resolution_unet(unet)
        size = unet.config.sample_size
        low_resolution = size // 2 if low_resolution is None else low_resolution  # default: a 2x stage
        if not isinstance(low_resolution, int) or not 1 <= low_resolution < size:
            raise ValueError(f"`low_resolution` must be an integer in [1, {size - 1}] (below the UNet's {size}px); "
                             f"got {low_resolution!r}.")  # fmt: skip
        embeddings = unet.config.num_class_embeds if isinstance(unet, UNet2DConditionModel) else None
        if null_class_label is not None and null_class_label != (embeddings or 0) - 1:
            raise ValueError(f"`null_class_label` must be the UNet's last class embedding ({(embeddings or 0) - 1}); "
                             f"got {null_class_label}.")  # fmt: skip
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(low_resolution=low_resolution, null_class_label=null_class_label,
                                class_names=class_names)  # fmt: skip

    @property
    def channels(self) -> int:
        return self.unet.config.in_channels // 2

    @property
    def num_classes(self) -> int:
        """The classes the stage is conditioned on (0: none), the null class not counted."""
        embeddings = getattr(self.unet.config, "num_class_embeds", None) if isinstance(self.unet, UNet2DConditionModel) else None
        return (embeddings or 0) - (self.config.null_class_label is not None)

    def check_options(self, augmentation_level, num_inference_steps, thresholding, eta, prefix: str = "") -> None:
        """The stage's own arguments, checked before any network runs; a cascade checks them before its base runs,
        naming them as it does (`prefix` "super_resolution_": super_resolution_steps, super_resolution_eta, ...)."""
        check_range("augmentation_level", augmentation_level, low=0, high=1)
        check_range(f"{prefix}steps" if prefix else "num_inference_steps", num_inference_steps, low=1, integer=True)
        check_range(f"{prefix}eta", eta, low=0)
        if thresholding is not None:
            check_choice(f"{prefix}thresholding", thresholding, THRESHOLDING_MODES)

    def checked_guidance(self, class_labels, batch: int, guider, guidance_scale, scheduler, eta, prefix: str = ""):
        """(labels or None, the call's guider): `class_labels` checked against the stage's classes and the guider
        against what the stage can predict, before any network runs (`prefix` as for `check_options`)."""
        guider = guider_for_call(guider, guidance_scale, None, default_guidance_scale=1.0)
        if isinstance(guider, Guider):
            guider.check(scheduler, has_classifier=False, eta=eta)
        if guidance_scale is not None and guidance_scale != 1 and (class_labels is None or not self.num_classes):
            raise ValueError(f"`{prefix}guidance_scale` != 1 (classifier-free guidance) needs a class-conditioned "
                             f"super-resolution stage and `class_labels`; this stage is "
                             f"{'class-conditioned' if self.num_classes else 'not class-conditioned'} and "
                             f"{'no' if class_labels is None else ''} labels were given.")  # fmt: skip
        if class_labels is None:
            return None, guider
        if not self.num_classes:
            raise ValueError(f"`{prefix}class_labels` given, but this super-resolution stage is not class-conditioned "
                             "(a UNet2DConditionModel with class embeddings and a null class).")  # fmt: skip
        return class_indices(class_labels, batch, self.num_classes).to(self.device), guider

    def conditioning(self, condition, levels, class_labels) -> Conditioning:
        """The stage's predictions: conditioned on the low-resolution image (and the class), and for a
        class-conditioned stage the null class's as the unconditional one (the class's own without labels)."""
        branch = {"condition": condition, "levels": levels}
        missing = {"pred_uncond": "the super-resolution UNet is not class-conditioned (it has no null class)"}
        if not self.num_classes:
            return Conditioning(LowResolutionConditioned(self.unet), {"pred_cond": branch}, missing=missing)
        null = torch.full((len(levels),), self.config.null_class_label, dtype=torch.long, device=self.device)
        if class_labels is None:
            missing = {"pred_uncond": "no `class_labels` were given: guidance needs a class to guide towards"}
            return Conditioning(LowResolutionConditioned(self.unet), {"pred_cond": {**branch, "class_labels": null}},
                                missing=missing)  # fmt: skip
        branches = {"pred_cond": {**branch, "class_labels": class_labels}, "pred_uncond": {**branch, "class_labels": null}}
        return Conditioning(LowResolutionConditioned(self.unet), branches, class_labels)

    @torch.inference_mode()
    def iterate(self, low_resolution: torch.Tensor, augmentation_level: float = DEFAULT_AUGMENTATION_LEVEL,
                num_inference_steps: int = 50, eta: float = 0.0, thresholding: str | None = None,
                dynamic_thresholding_ratio: float | None = None, generator=None, evaluations: Counter | None = None,
                class_labels=None, guidance_scale: float | None = None, guider=None):  # fmt: skip
        """Super-resolve low-resolution images in [-1, 1], (N, C, low_resolution, low_resolution), step by step:
        yields (i, t, x_t, x0 prediction) after every step. x_T is drawn first, then the augmentation noise."""
        self.check_options(augmentation_level, num_inference_steps, thresholding, eta)
        scheduler = private_scheduler(self.scheduler, thresholding, dynamic_thresholding_ratio)
        batch, size = len(low_resolution), self.unet.config.sample_size
        labels, guider = self.checked_guidance(class_labels, batch, guider, guidance_scale, scheduler, eta)
        shape = (batch, self.channels, size, size)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        levels = torch.full((batch,), float(augmentation_level), device=self.device)
        condition = low_resolution_condition(low_resolution.to(self.device, self.unet.dtype), size, levels, noise)
        conditioning = self.conditioning(condition, levels, labels)
        set_distinct_timesteps(scheduler, num_inference_steps, self.device)
        plan(guider, conditioning, scheduler, scheduler.timesteps)
        options = step_kwargs(scheduler, generator, eta, True)
        yield from denoise(guider, conditioning, scheduler, latents * scheduler.init_noise_sigma, scheduler.timesteps,
                           options, self.progress_bar, evaluations)  # fmt: skip

    @torch.inference_mode()
    def __call__(self, image, augmentation_level: float = DEFAULT_AUGMENTATION_LEVEL, num_inference_steps: int = 50,
                 eta: float = 0.0, thresholding: str | None = None, dynamic_thresholding_ratio: float | None = None,
                 generator=None, output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None,
                 class_labels=None, guidance_scale: float | None = None, guider=None):  # fmt: skip
        """Super-resolve `image`: PIL images, a NumPy (N, H, W, C) array or a torch (N, C, H, W) tensor with values
        in [0, 1] (what the pipelines output), each `low_resolution` pixels square with the UNet's channels.
        A class-conditioned stage takes `class_labels` (one, or one per image) and guidance: `guidance_scale` w
        (classifier-free guidance; 1, the default, is the conditional prediction alone) or a `guider`."""
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        self.check_options(augmentation_level, num_inference_steps, thresholding, eta)
        low_resolution = images_to_model_range(image, self.channels, self.config.low_resolution)
        evaluations = Counter()
        steps = self.iterate(low_resolution, augmentation_level, num_inference_steps, eta, thresholding,
                             dynamic_thresholding_ratio, generator, evaluations, class_labels, guidance_scale, guider)  # fmt: skip
        images = latents_to_images(run(self, steps, callback_on_step_end), output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, evaluations=dict(evaluations))
