"""DDIM inversion (Song 2021, sec. 4.3) and what it enables: reconstruction, interpolation between real images
(DALL-E 2's use of DDIM latents) and SDEdit variations (Meng 2022). `InversionMixin` adds them to
`GuidedDiffusionPipeline`; they run the shared guided step and loop of `pipelines.denoising`, so every guider
works the same way here."""

import math
from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..guiders import guider_for_call
from ..schedulers import GuidedDDIMScheduler
from ..schedulers.validation import check_range
from .image_utils import images_to_model_range
from .denoising import after_inversion_step, denoise, guided_output, plan, run, step_context
from .inference import ordinary
from .samplers import editable_config, step_kwargs

# upper bounds that keep one call finite: each fixed-point iteration is one more network call per step, each frame
# one more image to reconstruct (beyond these, a typo like 1e9 would hang or exhaust memory)
MAX_FIXED_POINT_ITERATIONS, MAX_FRAMES = 50, 1024


@dataclass
class InversionOutput(BaseOutput):
    """`latents`: x at the first sampling timestep, which DDIM (eta = 0) maps back to the images;
    `trajectory`: x at every level from x0 up to those latents, when asked for."""

    latents: torch.Tensor
    trajectory: list | None = None


def slerp(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985), one output per weight l in `weights`:

        x(l) = sin((1 - l) theta) / sin(theta) x_a + sin(l theta) / sin(theta) x_b,  cos(theta) = <x_a, x_b> / |x_a||x_b|

    Gaussian latents in d dimensions lie near the sphere of radius sqrt(d); the straight line between two of them
    cuts inside it, through norms the model never sees at t = T, while the arc keeps the norm when |x_a| = |x_b|."""
    a, b = start.flatten().double(), end.flatten().double()
    theta = torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1))
    lam = torch.as_tensor(weights, dtype=torch.float64, device=a.device).reshape(-1, 1)
    if theta < 1e-6:  # (anti)parallel to machine precision: the arc is the line
        mixed = (1 - lam) * a + lam * b
    else:
        mixed = (torch.sin((1 - lam) * theta) * a + torch.sin(lam * theta) * b) / torch.sin(theta)
    return mixed.to(start.dtype).reshape(len(lam), *start.shape)


class InversionMixin:
    """invert / reconstruct / interpolate / variations for a pipeline with `unet`, `scheduler`, `vae`, `encode`,
    `decode`, `check_inputs` and `scheduler_for_call` (see `GuidedDiffusionPipeline`). With a
    VAE, images are encoded first and everything runs on latents."""

    def inversion_scheduler(self) -> GuidedDDIMScheduler:
        """Our DDIM on the pipeline's noise schedule, without clipping or thresholding: both break invertibility
        (x0 predictions outside [-1, 1] at high noise are normal and must pass through unchanged)."""
        config = editable_config(self.scheduler.config)
        config.update(clip_sample=False, thresholding=False)
        return GuidedDDIMScheduler.from_config(config)

    def preprocess(self, images) -> torch.Tensor:
        """PIL / NumPy / torch images in [0, 1] (as the pipeline outputs them) -> what the UNet diffuses: (N, C, H, W)
        in [-1, 1], or with a VAE their scaled latents."""
        config = self.image_config
        x = images_to_model_range(images, config.in_channels, config.sample_size).to(self.device, self.unet.dtype)
        return self.encode(x)

    @torch.inference_mode()
    def invert(self, images, class_labels=None, num_inference_steps: int = 50, guidance_scale: float | None = None,
               fixed_point_iterations: int = 0, return_trajectory: bool = False, guider=None,
               callback_on_step_end=None) -> InversionOutput:  # fmt: skip
        """x0 -> latents, DDIM (eta = 0) run backwards over the timesteps t_1 < ... < t_N of `num_inference_steps`:

            x0_hat = (x_prev - sqrt(1 - abar_prev) eps) / sqrt(abar_prev),  x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps

        with eps the network's prediction (guided by `guider`, or CFG-combined for `guidance_scale` != 1, towards
        `class_labels`) at (x_prev, t), the usual estimate of eps(x_t, t). `fixed_point_iterations` k > 0
        re-evaluates eps at the new x_t k times (k more network calls per step); at convergence x_t solves the
        sampler's own step exactly, so `reconstruct` returns the images up to how far the iteration converged.
        `callback_on_step_end(pipe, i, t, {"latents"})` is called after each step (progress, cancelling)."""
        return self._invert_latents(self.preprocess(images), class_labels, num_inference_steps, guidance_scale,
                                    fixed_point_iterations, return_trajectory, guider, callback_on_step_end)  # fmt: skip

    def _invert_latents(self, x, class_labels, num_inference_steps, guidance_scale, fixed_point_iterations,
                        return_trajectory=False, guider=None, callback_on_step_end=None) -> InversionOutput:  # fmt: skip
        """`invert` from what the UNet diffuses (images in [-1, 1], or scaled latents)."""
        guider = guider_for_call(guider, guidance_scale)
        if getattr(guider, "changes_step", False) and not getattr(guider, "inverts_step", False):
            raise ValueError(f"`guider` {type(guider).__name__} changes the sampler's step and has no inverse of that "
                             f"change for DDIM inversion; invert with CFG (ClassifierFreeGuidance) or CFGPlusPlus "
                             f"instead.")  # fmt: skip
        check_range("num_inference_steps", num_inference_steps, low=1, integer=True)
        check_range("fixed_point_iterations", fixed_point_iterations, low=0, high=MAX_FIXED_POINT_ITERATIONS, integer=True)
        scheduler = self.inversion_scheduler()
        _, conditioning = self.check_inputs(len(x), class_labels, guider, "pt", scheduler)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = scheduler.timesteps.flip(0)
        plan(guider, conditioning, scheduler, timesteps)
        trajectory = [ordinary(x.cpu())] if return_trajectory else None
        for i, t in enumerate(self.progress_bar(timesteps)):
            x = self._inversion_step(scheduler, x, t, guider, conditioning, fixed_point_iterations, i, len(timesteps))
            if return_trajectory:
                trajectory.append(ordinary(x.cpu()))
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {"latents": x})
        return InversionOutput(latents=ordinary(x), trajectory=trajectory)

    def _inversion_step(self, scheduler, x_prev, t, guider, conditioning, fixed_point_iterations, step, num_steps):
        """x at the level before t -> x_t; each fixed-point iteration x_t <- F(x_prev, eps(x_t, t))."""
        x_t = x_prev
        for _ in range(fixed_point_iterations + 1):
            output = guided_output(guider, conditioning, step_context(conditioning, step, num_steps, t, scheduler, x_t))
            x_t = after_inversion_step(guider, scheduler.inversion_step(output, t, x_prev, model_input=x_t).next_sample, output)
        return x_t

    @torch.inference_mode()
    def reconstruct(self, latents: torch.Tensor, class_labels=None, num_inference_steps: int = 50,
                    guidance_scale: float | None = None, output_type: str = "pt", guider=None,
                    callback_on_step_end=None):  # fmt: skip
        """Latents from `invert` -> images, by DDIM with eta = 0 and no clipping over the same timesteps: pass the
        `num_inference_steps`, `class_labels` and guidance the inversion used. `class_labels` may be float class
        weights (interpolation). `callback_on_step_end` as for sampling."""
        guider = guider_for_call(guider, guidance_scale)
        scheduler = self.inversion_scheduler()
        _, conditioning = self.check_inputs(len(latents), class_labels, guider, output_type, scheduler)
        x = self.checked_latents(latents, len(latents))  # the UNet's size: not silently another image size
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        plan(guider, conditioning, scheduler, scheduler.timesteps)
        steps = denoise(guider, conditioning, scheduler, x, scheduler.timesteps, {"eta": 0.0}, self.progress_bar)
        x = run(self, steps, callback_on_step_end)
        return self.postprocess(self.decode(x), output_type)

    @torch.inference_mode()
    def interpolate(self, start_image, end_image, num_frames: int = 8, start_label: int | None = None,
                    end_label: int | None = None, num_inference_steps: int = 50, guidance_scale: float | None = None,
                    fixed_point_iterations: int = 0, output_type: str = "pil", guider=None,
                    callback_on_step_end=None):  # fmt: skip
        """A smooth sequence of `num_frames` images from one real image to another: invert both (each with its own
        label, if given), slerp the latents, linearly interpolate the class embeddings
        e(l) = (1 - l) E[start_label] + l E[end_label], and decode each frame with DDIM. The first and last frames
        are the two reconstructions. `callback_on_step_end` is called after every inversion and decoding step."""
        check_range("num_frames", num_frames, low=2, high=MAX_FRAMES, integer=True)
        guider_for_call(guider, guidance_scale)  # checked before the images are encoded
        pair = torch.cat([self.preprocess(start_image), self.preprocess(end_image)])
        if len(pair) != 2:
            raise ValueError(f"`start_image` and `end_image` must be one image each; got {len(pair)} in all.")
        if (start_label is None) != (end_label is None):
            raise ValueError("Pass both `start_label` and `end_label`, or neither.")
        labels = None if start_label is None else [start_label, end_label]
        inverted = self._invert_latents(pair, labels, num_inference_steps, guidance_scale, fixed_point_iterations,
                                        guider=guider, callback_on_step_end=callback_on_step_end)  # fmt: skip
        lam = torch.linspace(0, 1, num_frames, device=self.device)
        latents = slerp(inverted.latents[0], inverted.latents[1], lam)
        weights = None
        if labels is not None:
            one_hot = torch.nn.functional.one_hot(torch.tensor(labels), self.num_classes).float().to(self.device)
            weights = (1 - lam)[:, None] * one_hot[0] + lam[:, None] * one_hot[1]
        return self.reconstruct(latents, weights, num_inference_steps, guidance_scale, output_type, guider=guider,
                                callback_on_step_end=callback_on_step_end)  # fmt: skip

    @torch.inference_mode()
    def variations(self, images, strength: float = 0.5, class_labels=None, guidance_scale: float | None = None,
                   classifier_scale: float | None = None, num_inference_steps: int = 50, eta: float = 0.0,
                   thresholding: str | None = None, generator=None, output_type: str = "pil", guider=None,
                   callback_on_step_end=None):  # fmt: skip
        """SDEdit (Meng 2022): noise the images to t0 = the first of the last `strength` x `num_inference_steps`
        timesteps, x_t0 = sqrt(abar_t0) x0 + sqrt(1 - abar_t0) eps, and denoise from there with the pipeline's
        scheduler, optionally guided towards `class_labels` ("turn this 3 into an 8"). Small strengths keep the
        image, strength 1 keeps little more than its layout. `callback_on_step_end` as for sampling."""
        guider = guider_for_call(guider, guidance_scale, classifier_scale)
        check_range("strength", strength, low=0, high=1, low_open=True)
        check_range("eta", eta, low=0)
        scheduler = self.scheduler_for_call(thresholding, None)
        x0 = self.preprocess(images)
        _, conditioning = self.check_inputs(len(x0), class_labels, guider, output_type, scheduler, eta)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        levels = scheduler.num_inference_steps  # fewer than asked where Karras levels round onto one timestep
        steps_run = min(math.floor(levels * strength), levels)
        if steps_run < 1:
            raise ValueError(f"`strength`={strength} x `num_inference_steps`={num_inference_steps} leaves no step to run.")
        start = levels - steps_run
        timesteps = scheduler.timesteps[start * scheduler.order :]
        if hasattr(scheduler, "set_begin_index"):  # multistep solvers (DPM-Solver++) track their position
            scheduler.set_begin_index(start * scheduler.order)
        plan(guider, conditioning, scheduler, timesteps)
        noise = randn_tensor(x0.shape, generator=generator, device=self.device, dtype=x0.dtype)
        x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(x0)))
        options = step_kwargs(scheduler, generator, eta, True)
        x = run(self, denoise(guider, conditioning, scheduler, x, timesteps, options, self.progress_bar), callback_on_step_end)
        return self.postprocess(self.decode(x), output_type)
