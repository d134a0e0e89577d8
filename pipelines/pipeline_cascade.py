"""A cascade (Ho et al. 2021, "Cascaded Diffusion Models"; Saharia et al. 2022, Imagen): a class-conditional (or
unconditional) base model samples at low resolution with any guidance, then a super-resolution stage, trained with
noise-conditioning augmentation, samples the full resolution conditioned on it. One folder holds both stages."""

from collections import Counter
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..models import noise_aware_classifier  # noqa: F401  (loadable `classifier/` components, as pipeline_guided)
from ..models.safetensors_only import SafetensorsOnly
from ..schedulers.validation import check_choice
from .denoising import run
from .image_utils import latents_to_images
from .noise_augmentation import upsample
from .pipeline_guided import GuidedDiffusionPipeline, images_asked
from .pipeline_super_resolution import DEFAULT_AUGMENTATION_LEVEL, SuperResolutionPipeline, check_super_resolution_unet
from .samplers import SAMPLERS, make_scheduler


@dataclass
class CascadeOutput(ImagePipelineOutput):
    """`images` (the super-resolved samples), `low_resolution_images` (the base stage's), `upsampled_images` (those
    bilinearly upsampled, what super-resolution improves on) and `evaluations`: the base's network evaluations as
    the guided pipeline counts them, plus "super_resolution_unet"."""

    low_resolution_images: object = None
    upsampled_images: object = None
    evaluations: dict | None = None


class CascadePipeline(SafetensorsOnly, DiffusionPipeline):
    """(unet, scheduler): the base stage, as `GuidedDiffusionPipeline` (with its optional classifier, clean
    classifier and weak model for guidance); (super_resolution_unet, super_resolution_scheduler): the
    super-resolution stage, as `SuperResolutionPipeline`, from the base's size to its own."""

    model_cpu_offload_seq = "unet->weak_unet->super_resolution_unet"
    _optional_components = ["classifier", "weak_unet", "clean_classifier"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin,
                 super_resolution_unet: UNet2DModel | UNet2DConditionModel,
                 super_resolution_scheduler: SchedulerMixin, null_class_label: int | None = None,
                 class_names: list[str] | None = None, classifier=None, weak_unet: UNet2DModel | None = None,
                 clean_classifier=None):  # fmt: skip
        super().__init__()
        check_super_resolution_unet(super_resolution_unet)
        low, high = unet.config.sample_size, super_resolution_unet.config.sample_size
        if super_resolution_unet.config.in_channels != 2 * unet.config.in_channels or not low < high:
            raise ValueError(f"The super-resolution stage must read the base's images: the base makes "
                             f"{unet.config.in_channels}x{low}px, the super-resolution UNet reads "
                             f"{super_resolution_unet.config.in_channels // 2}-channel images to make {high}px.")  # fmt: skip
        stage_classes = getattr(super_resolution_unet.config, "num_class_embeds", None)
        if stage_classes is not None and stage_classes != unet.config.num_class_embeds:
            raise ValueError(f"A class-conditioned super-resolution stage must know the base's classes: it has "
                             f"{stage_classes} class embeddings, the base {unet.config.num_class_embeds}.")  # fmt: skip
        self.register_modules(unet=unet, scheduler=scheduler, super_resolution_unet=super_resolution_unet,
                              super_resolution_scheduler=super_resolution_scheduler, classifier=classifier,
                              weak_unet=weak_unet, clean_classifier=clean_classifier)  # fmt: skip
        self.register_to_config(null_class_label=null_class_label, class_names=class_names)
        self.base  # the base's own checks (null class, weak model), now rather than at the first call

    @property
    def base(self) -> GuidedDiffusionPipeline:
        """The base stage as a pipeline of its own (sharing this one's modules)."""
        return self._stage(GuidedDiffusionPipeline(self.unet, self.scheduler, self.classifier, self.config.null_class_label,
                                                   self.config.class_names, weak_unet=self.weak_unet,
                                                   clean_classifier=self.clean_classifier))  # fmt: skip

    @property
    def super_resolution(self) -> SuperResolutionPipeline:
        """The super-resolution stage as a pipeline of its own (sharing this one's modules)."""
        conditioned = getattr(self.super_resolution_unet.config, "num_class_embeds", None) is not None
        return self._stage(SuperResolutionPipeline(self.super_resolution_unet, self.super_resolution_scheduler,
                                                   low_resolution=self.unet.config.sample_size,
                                                   null_class_label=self.config.null_class_label if conditioned else None,
                                                   class_names=self.config.class_names))  # fmt: skip

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    def check_inputs(self, *args, **kwargs):
        """The base stage's checks and conditioning (`GuidedDiffusionPipeline.check_inputs`)."""
        return self.base.check_inputs(*args, **kwargs)

    def _stage(self, pipeline):
        pipeline.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipeline

    @torch.inference_mode()
    def __call__(self, batch_size: int | None = None, class_labels=None, guidance_scale: float | None = None,
                 classifier_scale: float | None = None, guider=None, num_inference_steps: int = 50, eta: float = 0.0,
                 thresholding: str | None = None, sampler: str | None = None,
                 augmentation_level: float = DEFAULT_AUGMENTATION_LEVEL,
                 super_resolution_steps: int = 50, super_resolution_eta: float = 0.0,
                 super_resolution_thresholding: str | None = None, super_resolution_sampler: str | None = None,
                 super_resolution_guidance_scale: float | None = None, generator=None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None):  # fmt: skip
        """Sample with the base (arguments as `GuidedDiffusionPipeline.__call__`: labels, guider or the scale
        shorthands, steps, eta, thresholding; `sampler`, a name of `pipelines.SAMPLERS`, for this call, default the
        base's scheduler), then super-resolve with the stage's own `augmentation_level`, `super_resolution_steps`,
        `super_resolution_eta`, `super_resolution_thresholding` and `super_resolution_sampler`; a class-conditioned
        stage is told the base's `class_labels` and guided by `super_resolution_guidance_scale` (CFG; default 1, its
        conditional prediction alone). Every argument of both stages is checked before the first network call. One
        `generator` draws the base's noise, then the stage's. `callback_on_step_end(stage_pipeline, i, t, tensors)` is called after each step of both stages."""
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        base, super_resolution = self.base, self.super_resolution
        use_samplers(base, super_resolution, sampler, super_resolution_sampler)
        super_resolution.check_options(augmentation_level, super_resolution_steps, super_resolution_thresholding,
                                       super_resolution_eta, prefix="super_resolution_")  # fmt: skip
        labels = class_labels if super_resolution.num_classes else None  # the classes the stage can read
        labels, stage_guider = super_resolution.checked_guidance(
            labels, images_asked(batch_size, class_labels), None, super_resolution_guidance_scale,
            super_resolution.scheduler, super_resolution_eta, prefix="super_resolution_")  # fmt: skip
        evaluations = Counter()
        low_resolution = run(base, base.iterate(batch_size, class_labels, guidance_scale, classifier_scale,
                                                num_inference_steps, eta, thresholding=thresholding,
                                                generator=generator, guider=guider, evaluations=evaluations),
                             callback_on_step_end)  # fmt: skip
        stage_evaluations = Counter()
        images = run(super_resolution, super_resolution.iterate(
            low_resolution.clamp(-1, 1), augmentation_level, super_resolution_steps, super_resolution_eta,
            super_resolution_thresholding, generator=generator, evaluations=stage_evaluations, class_labels=labels,
            guider=stage_guider), callback_on_step_end)  # fmt: skip
        evaluations["super_resolution_unet"] = stage_evaluations["unet"]
        return cascade_output(images, low_resolution, output_type, return_dict, dict(evaluations))


def cascade_output(images, low_resolution, output_type: str, return_dict: bool, evaluations: dict):
    """The final images, the base's, and the base's upsampled to the final size (what the stage improves on)."""
    upsampled = upsample(low_resolution, images.shape[-1])
    outputs = [latents_to_images(x, output_type) for x in (images, low_resolution, upsampled)]
    return CascadeOutput(*outputs, evaluations=evaluations) if return_dict else tuple(outputs)


def use_samplers(base, super_resolution, sampler: str | None, super_resolution_sampler: str | None) -> None:
    """This call's samplers (names of `pipelines.SAMPLERS`, None: the folder's), each on its stage's noise schedule;
    the stage pipelines are this call's own, so the folder's schedulers stay as they are."""
    for name, chosen, stage in [("sampler", sampler, base), ("super_resolution_sampler", super_resolution_sampler,
                                                             super_resolution)]:  # fmt: skip
        if chosen is not None:
            check_choice(name, chosen, SAMPLERS)
            stage.scheduler = make_scheduler(chosen, stage.scheduler.config)
