"""Class-conditional (or unconditional) sampling with classifier-free guidance, for any diffusers scheduler."""

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..schedulers.validation import check_range
from .guidance import classifier_free_guidance


@dataclass
class GuidedPipelineOutput(ImagePipelineOutput):
    """`images`, plus the per-step latents and x0 predictions when `return_trajectory=True`."""

    trajectory: list | None = None


class GuidedDiffusionPipeline(DiffusionPipeline):
    """Sampling from a `UNet2DModel` with our schedulers or diffusers' own.

    A class-conditional UNet has `num_class_embeds` = number of classes + 1: the last index is the null class
    ("no label"), learnt by dropping labels during training, which classifier-free guidance needs.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @property
    def num_classes(self) -> int:
        """Number of real classes (0 for an unconditional UNet)."""
        return max((self.unet.config.num_class_embeds or 1) - 1, 0)

    @property
    def null_class(self) -> int | None:
        return self.num_classes if self.num_classes else None

    def _check_inputs(self, batch_size, class_labels, guidance_scale, output_type):
        check_range("batch_size", batch_size, low=1)
        check_range("guidance_scale", guidance_scale, low=0)
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"`output_type` must be one of 'pil', 'np', 'pt'; got {output_type!r}.")
        if class_labels is None:
            return None
        if not self.num_classes:
            raise ValueError("`class_labels` given, but this UNet is unconditional (no `num_class_embeds`).")
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if len(labels) == 1:
            labels = labels.expand(batch_size)
        if len(labels) != batch_size:
            raise ValueError(f"`class_labels` must have 1 or `batch_size`={batch_size} entries; got {len(labels)}.")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"`class_labels` must lie in [0, {self.num_classes - 1}]; got {labels.tolist()}.")
        return labels.to(self.device)

    def model_output(self, latents, t, class_labels, guidance_scale):
        """The (guided) network output at one step: one batched UNet call for both CFG halves, and the needless
        half skipped when w is 0 (unconditional only) or 1 (conditional only)."""
        model_input = self.scheduler.scale_model_input(latents, t)
        if class_labels is None:  # unconditional sampling: the null class, or no labels at all
            labels = None if self.null_class is None else torch.full_like(latents[:, 0, 0, 0], self.null_class, dtype=torch.long)
            return self.unet(model_input, t, class_labels=labels).sample
        if guidance_scale == 1:
            return self.unet(model_input, t, class_labels=class_labels).sample
        null = torch.full_like(class_labels, self.null_class)
        if guidance_scale == 0:
            return self.unet(model_input, t, class_labels=null).sample
        both = self.unet(torch.cat([model_input] * 2), t, class_labels=torch.cat([null, class_labels])).sample
        uncond, cond = both.chunk(2)
        return classifier_free_guidance(uncond, cond, guidance_scale)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        return_trajectory: bool = False,
        callback_on_step_end=None,
    ):
        class_labels = self._check_inputs(batch_size, class_labels, guidance_scale, output_type)
        config = self.unet.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}; got {tuple(latents.shape)}.")
        latents = latents.to(self.device) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        trajectory = []
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            output = self.model_output(latents, t, class_labels, guidance_scale)
            step = self.scheduler.step(output, t, latents, **step_kwargs)
            latents, x0 = step.prev_sample, getattr(step, "pred_original_sample", None)
            if return_trajectory:
                trajectory.append({"timestep": int(t), "latents": latents.cpu(), "pred_original_sample": x0})
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {"latents": latents, "pred_original_sample": x0})
        images = self.postprocess(latents, output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, trajectory=trajectory if return_trajectory else None)

    def prepare_extra_step_kwargs(self, generator, eta):
        """Pass `eta`/`generator` only to schedulers whose `step` takes them (DDIM takes eta, DPM-Solver neither)."""
        import inspect

        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    @staticmethod
    def postprocess(latents: torch.Tensor, output_type: str):
        """[-1, 1] -> [0, 1] images as PIL, NumPy (N, H, W, C) or torch (N, C, H, W)."""
        images = (latents / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return images
        array = images.cpu().permute(0, 2, 3, 1).float().numpy()
        return array if output_type == "np" else DiffusionPipeline.numpy_to_pil(array)
