"""Imagen's cascade (Saharia et al. 2022): a text-conditional base model at low resolution (frozen text encoder,
cross-attention, any guider), then a super-resolution stage trained with noise-conditioning augmentation
(`SuperResolutionPipeline`) samples the full resolution conditioned on the base's images. One folder holds both
stages; the frozen encoder is loaded by name, as for `TextToImagePipeline`."""

from collections import Counter

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..models.safetensors_only import SafetensorsOnly
from ..schedulers.validation import check_choice
from .denoising import run
from .pipeline_cascade import cascade_output, use_samplers
from .pipeline_super_resolution import DEFAULT_AUGMENTATION_LEVEL, SuperResolutionPipeline, check_super_resolution_unet
from .pipeline_text_to_image import TextToImagePipeline
from .text_encoding import DEFAULT_TEXT_ENCODER, FrozenTextEncoderFolder


class TextCascadePipeline(FrozenTextEncoderFolder, SafetensorsOnly, DiffusionPipeline):
    """(tokenizer, text_encoder, unet, scheduler): the text base, as `TextToImagePipeline` in pixel space;
    (super_resolution_unet, super_resolution_scheduler): a super-resolution stage that reads images only (the plain
    stage of `CascadePipeline`), from the base's square size to its own."""

    model_cpu_offload_seq = "text_encoder->unet->super_resolution_unet"
    _optional_components = ["tokenizer", "text_encoder"]

    def __init__(self, tokenizer, text_encoder, unet: UNet2DConditionModel, scheduler: SchedulerMixin,
                 super_resolution_unet: UNet2DModel | UNet2DConditionModel,
                 super_resolution_scheduler: SchedulerMixin, text_encoder_id: str = DEFAULT_TEXT_ENCODER,
                 max_length: int = 24, attention_mask: str = "both", prompt_preprocessing: str = "none"):  # fmt: skip
        super().__init__()
        check_super_resolution_unet(super_resolution_unet)
        size = unet.config.sample_size
        low = size if isinstance(size, int) else size[0] if size[0] == size[1] else None
        high = super_resolution_unet.config.sample_size
        if low is None or super_resolution_unet.config.in_channels != 2 * unet.config.in_channels or not low < high:
            raise ValueError(f"The super-resolution stage must read the base's images: the base makes "
                             f"{unet.config.in_channels}x{size}px, the super-resolution UNet reads square "
                             f"{super_resolution_unet.config.in_channels // 2}-channel images to make {high}px.")  # fmt: skip
        if getattr(super_resolution_unet.config, "num_class_embeds", None) is not None:
            raise ValueError("A text cascade's super-resolution stage must read images only: this one is "
                             "class-conditioned, and a text base has no class labels to tell it.")  # fmt: skip
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
                              super_resolution_unet=super_resolution_unet,
                              super_resolution_scheduler=super_resolution_scheduler)  # fmt: skip
        self.register_to_config(text_encoder_id=text_encoder_id, max_length=max_length, attention_mask=attention_mask,
                                prompt_preprocessing=prompt_preprocessing)  # fmt: skip
        self.base  # the base's own checks (encoder width, options), now rather than at the first call

    def without_text_encoder(self):
        return type(self)(None, None, self.unet, self.scheduler, self.super_resolution_unet,
                          self.super_resolution_scheduler, **self.text_options())  # fmt: skip

    @property
    def base(self) -> TextToImagePipeline:
        """The text base as a pipeline of its own (sharing this one's modules)."""
        return self._stage(TextToImagePipeline(self.tokenizer, self.text_encoder, self.unet, self.scheduler,
                                               **self.text_options()))  # fmt: skip

    @property
    def super_resolution(self) -> SuperResolutionPipeline:
        """The super-resolution stage as a pipeline of its own (sharing this one's modules)."""
        size = self.unet.config.sample_size
        return self._stage(SuperResolutionPipeline(self.super_resolution_unet, self.super_resolution_scheduler,
                                                   low_resolution=size if isinstance(size, int) else size[0]))  # fmt: skip

    def _stage(self, pipeline):
        pipeline.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipeline

    @torch.inference_mode()
    def __call__(self, prompt=None, negative_prompt=None, num_images_per_prompt: int = 1,
                 guidance_scale: float | None = None, guider=None, num_inference_steps: int = 50, eta: float = 0.0,
                 thresholding: str | None = None, sampler: str | None = None,
                 augmentation_level: float = DEFAULT_AUGMENTATION_LEVEL, super_resolution_steps: int = 50,
                 super_resolution_eta: float = 0.0, super_resolution_thresholding: str | None = None,
                 super_resolution_sampler: str | None = None, generator=None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None):  # fmt: skip
        """Sample the base for `prompt` (arguments as `TextToImagePipeline.__call__`: `negative_prompt`, the
        guider or `guidance_scale` (CFG, default 5), steps, eta, thresholding; `sampler`, a name of
        `pipelines.SAMPLERS`, for this call), then super-resolve with the stage's own `augmentation_level`,
        `super_resolution_steps`, `super_resolution_eta`, `super_resolution_thresholding` and
        `super_resolution_sampler`. Every argument of both stages is checked before the first network call; one
        `generator` (a torch.Generator) draws the base's noise, then the stage's. Output as `CascadePipeline`'s."""
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        if isinstance(generator, list):
            raise ValueError("`generator` must be one torch.Generator for a cascade (it draws both stages' noise).")
        base, super_resolution = self.base, self.super_resolution
        use_samplers(base, super_resolution, sampler, super_resolution_sampler)
        super_resolution.check_options(augmentation_level, super_resolution_steps, super_resolution_thresholding,
                                       super_resolution_eta, prefix="super_resolution_")  # fmt: skip
        base_output = base(prompt, negative_prompt, num_images_per_prompt, guidance_scale, num_inference_steps, eta,
                           thresholding, generator=generator, output_type="pt", guider=guider,
                           callback_on_step_end=callback_on_step_end)  # fmt: skip
        low_resolution = base_output.images * 2 - 1  # the base's images back in [-1, 1]
        stage_evaluations = Counter()
        images = run(super_resolution, super_resolution.iterate(
            low_resolution.to(self.device), augmentation_level, super_resolution_steps, super_resolution_eta,
            super_resolution_thresholding, generator=generator, evaluations=stage_evaluations),
            callback_on_step_end)  # fmt: skip
        evaluations = {**base_output.evaluations, "super_resolution_unet": stage_evaluations["unet"]}
        return cascade_output(images, low_resolution, output_type, return_dict, evaluations)
