"""Unconditional and class-conditional sampling with classifier-free and classifier guidance, for our schedulers
and diffusers' own."""

from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

# diffusers loads a pipeline component only from a module that is already imported: import the classifier's
# module here so that `GuidedDiffusionPipeline.from_pretrained` finds the `classifier/` of a saved folder
from ..models import noise_aware_classifier  # noqa: F401
from ..models.mixed_class_embedding import with_mixed_class_embedding
from ..models.safetensors_only import SafetensorsOnly
from ..schedulers.validation import check_choice, check_range
from .guidance import classifier_free_guidance, classifier_gradient, guide_mean, guide_score
from .image_utils import latents_to_images
from .inference import ordinary
from .inversion import InversionMixin
from .latent_space import from_latents, to_latents
from .samplers import set_distinct_timesteps, step_kwargs, with_thresholding

@dataclass
class GuidedPipelineOutput(ImagePipelineOutput):
    """`images`, plus per-step latents and x0 predictions when `return_trajectory=True`."""

    trajectory: list | None = None


class GuidedDiffusionPipeline(SafetensorsOnly, InversionMixin, DiffusionPipeline):
    """Sampling from a `UNet2DModel`, optionally guided.

    - A class-conditional UNet trained with label dropout has a null class ("no label", `null_class_label`, the
      last embedding), which classifier-free guidance needs.
    - `classifier` (optional): a noise-aware classifier p(y | x_t, t) on the same noise schedule, for classifier
      guidance. With our DDPM scheduler it shifts the mean (ADM Algorithm 1); with any other scheduler it
      corrects eps (ADM Algorithm 2), so diffusers' DDIM, DPM-Solver or Euler get it too.
    - `vae` (optional): an `AutoencoderKL` whose latent space the UNet (and classifier) work in, latent diffusion
      (Rombach 2022); images are decoded at the end, x = D(z / scaling_factor). Thresholding is for pixel ranges,
      so latent models are trained with clipping off and should be sampled with `thresholding="none"`.
    - `invert`, `reconstruct`, `interpolate` and `variations` (DDIM inversion and SDEdit) come from
      `InversionMixin`.
    """

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["classifier", "vae"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, classifier=None, null_class_label: int | None = None,
                 class_names: list[str] | None = None, vae=None):  # fmt: skip
        super().__init__()
        embeddings = unet.config.num_class_embeds
        if null_class_label is not None and null_class_label != (embeddings or 0) - 1:
            raise ValueError(f"`null_class_label` must be the last class embedding ({(embeddings or 0) - 1}); got {null_class_label}.")
        if vae is not None and vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(f"The VAE's {vae.config.latent_channels} latent channels must be the UNet's "
                             f"{unet.config.in_channels} input channels.")  # fmt: skip
        self.register_modules(unet=unet, scheduler=scheduler, classifier=classifier, vae=vae)
        self.register_to_config(null_class_label=null_class_label, class_names=class_names)

    @property
    def num_classes(self) -> int:
        """Real classes the UNet is conditioned on (0 for an unconditional UNet)."""
        embeddings = self.unet.config.num_class_embeds or 0
        return embeddings - 1 if self.config.null_class_label is not None else embeddings

    @property
    def image_config(self):
        """The config that gives the images' `in_channels` and `sample_size`: the VAE's for a latent model."""
        return self.unet.config if self.vae is None else self.vae.config

    # ------------------------------------------------------------------------------------------- checks
    def check_inputs(self, batch_size, class_labels, guidance_scale, classifier_scale, output_type):
        """Every bad argument raises ValueError here, before any sampling. Returns the labels as a tensor."""
        check_range("batch_size", batch_size, low=1, integer=True)
        check_range("guidance_scale", guidance_scale, low=0)
        check_range("classifier_scale", classifier_scale, low=0)
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        if guidance_scale != 1 and self.config.null_class_label is None:
            raise ValueError("`guidance_scale` != 1 (classifier-free guidance) needs a UNet with a null class; this "
                             "one has none (`null_class_label` is None). Use guidance_scale=1.")  # fmt: skip
        if classifier_scale > 0:
            self._check_classifier()
        if class_labels is None:
            if guidance_scale != 1 or classifier_scale > 0:
                raise ValueError("`guidance_scale` != 1 or `classifier_scale` > 0 needs `class_labels` to guide towards.")
            if self.num_classes and self.config.null_class_label is None:
                raise ValueError("This UNet is class-conditional without a null class: pass `class_labels`.")
            return None
        if not self.num_classes and classifier_scale == 0:
            raise ValueError("`class_labels` given, but the UNet is unconditional and there is no classifier guidance.")
        if torch.is_tensor(class_labels) and class_labels.is_floating_point():
            return self._check_class_weights(class_labels, batch_size, classifier_scale)
        labels = torch.as_tensor(class_labels)
        if labels.ndim > 1 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"`class_labels` must be integer class indices (a list or 1-D tensor), or a float "
                             f"tensor of class weights; got {class_labels!r}.")  # fmt: skip
        labels = labels.to(torch.long).reshape(-1)
        labels = labels.expand(batch_size) if len(labels) == 1 else labels
        if len(labels) != batch_size:
            raise ValueError(f"`class_labels` must have 1 or `batch_size`={batch_size} entries; got {len(labels)}.")
        num_classes = self.num_classes or self.classifier.config.num_classes
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"`class_labels` must lie in [0, {num_classes - 1}]; got {labels.tolist()}.")
        return labels.to(self.device)

    def _check_class_weights(self, weights: torch.Tensor, batch_size: int, classifier_scale: float) -> torch.Tensor:
        """Float `class_labels` of shape (batch or 1, num_classes): non-negative weights that mix the class
        embeddings (see `models.mixed_class_embedding`). Returned with a zero column for the null class."""
        if not self.num_classes:
            raise ValueError("Float `class_labels` (class weights) need a class-conditional UNet.")
        if classifier_scale > 0:
            raise ValueError("Classifier guidance needs integer `class_labels`, not class weights.")
        if weights.ndim != 2 or weights.shape[1] != self.num_classes or len(weights) not in (1, batch_size):
            raise ValueError(f"Float `class_labels` (class weights) must have shape (1 or {batch_size}, {self.num_classes}); "
                             f"got {tuple(weights.shape)}.")  # fmt: skip
        if not torch.isfinite(weights).all() or weights.min() < 0:
            raise ValueError("Float `class_labels` (class weights) must be finite and non-negative.")
        weights = weights.expand(batch_size, -1).to(self.device, torch.float32)
        if self.config.null_class_label is not None:
            weights = torch.cat([weights, weights.new_zeros(batch_size, 1)], dim=1)
        return weights

    def _check_classifier(self):
        if self.classifier is None:
            raise ValueError("`classifier_scale` > 0 needs a `classifier`; this pipeline has none.")
        config, unet = self.classifier.config, self.unet.config
        if self.num_classes and config.num_classes != self.num_classes:
            raise ValueError(f"`classifier` has {config.num_classes} classes, the UNet {self.num_classes}.")
        if (config.sample_size, config.in_channels) != (unet.sample_size, unet.in_channels):
            raise ValueError(f"`classifier` reads {config.in_channels}x{config.sample_size}px images, the UNet makes "
                             f"{unet.in_channels}x{unet.sample_size}px.")  # fmt: skip
        self.classifier.check_schedule(self.scheduler.config)

    def scheduler_for_call(self, thresholding: str | None, dynamic_thresholding_ratio: float | None):
        """The scheduler, or a copy with the thresholding of this call ("none", "static", "dynamic")."""
        return with_thresholding(self.scheduler, thresholding, dynamic_thresholding_ratio)

    # --------------------------------------------------------------------------------------- one step
    def classifier_free_output(self, model_input, t, class_labels, guidance_scale):
        """The network output at one step: one batched UNet call for both CFG halves, and the needless half
        skipped when w is 0 (unconditional only) or 1 (conditional only)."""
        if not self.num_classes:  # an unconditional UNet (class_labels, if any, are classifier targets)
            return self.unet(model_input, t).sample
        unet, null = self._unet_and_null_labels(class_labels, len(model_input), model_input.device)
        if class_labels is None or guidance_scale == 0:
            return unet(model_input, t, class_labels=null).sample
        if guidance_scale == 1:
            return unet(model_input, t, class_labels=class_labels).sample
        both = unet(torch.cat([model_input] * 2), t, class_labels=torch.cat([null, class_labels])).sample
        uncond, cond = both.chunk(2)
        return classifier_free_guidance(uncond, cond, guidance_scale)

    def _unet_and_null_labels(self, class_labels, batch: int, device):
        """The UNet and null-class labels to call it with: for float class weights, a view of the UNet that mixes
        class embeddings and the null class as a one-hot row."""
        null_label = self.config.null_class_label
        null = None if null_label is None else torch.full((batch,), null_label, dtype=torch.long, device=device)
        if class_labels is None or not class_labels.is_floating_point():
            return self.unet, null
        if null is not None:
            null = torch.nn.functional.one_hot(null, self.unet.config.num_class_embeds).to(class_labels.dtype)
        return with_mixed_class_embedding(self.unet), null

    def guided_step(self, scheduler, latents, t, class_labels, guidance_scale, classifier_scale, step_kwargs):
        """Model output (with CFG), classifier guidance in the form that suits the scheduler, one scheduler step."""
        model_input = scheduler.scale_model_input(latents, t)
        output = self.classifier_free_output(model_input, t, class_labels, guidance_scale)
        gradient, mean_shift = None, hasattr(scheduler, "noise_std")  # our DDPM exposes its Sigma_t
        if classifier_scale > 0:
            gradient = classifier_gradient(self.classifier, model_input, t, class_labels)
            if not mean_shift:
                channels = latents.shape[1]
                alpha_prod = float(scheduler.alphas_cumprod[int(t)])
                guided = guide_score(output[:, :channels], model_input, alpha_prod, gradient, classifier_scale,
                                     scheduler.config.prediction_type)  # fmt: skip
                output = torch.cat([guided, output[:, channels:]], dim=1)
        step = scheduler.step(output, t, latents, **step_kwargs)
        prev_sample = step.prev_sample
        if gradient is not None and mean_shift:
            predicted_variance = output[:, latents.shape[1] :] if output.shape[1] > latents.shape[1] else None
            variance = scheduler.noise_std(t, predicted_variance) ** 2
            prev_sample = guide_mean(prev_sample, variance, gradient, classifier_scale)
        return prev_sample, getattr(step, "pred_original_sample", None)

    # ------------------------------------------------------------------------------------------ sample
    @torch.inference_mode()
    def iterate(
        self,
        batch_size: int = 1,
        class_labels=None,
        guidance_scale: float = 1.0,
        classifier_scale: float = 0.0,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        thresholding: str | None = None,
        dynamic_thresholding_ratio: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
    ):
        """Sample step by step: yields (i, t, latents, pred_original_sample) after every step, for streaming.
        Arguments as for `__call__`; all checked before the first step."""
        class_labels = self.check_inputs(batch_size, class_labels, guidance_scale, classifier_scale, "pt")
        check_range("eta", eta, low=0)  # checked here too: schedulers without eta (DDPM, DPM-Solver) never see it
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"`generator` is a list of {len(generator)} generators; it must have one per image, "
                             f"`batch_size`={batch_size}.")  # fmt: skip
        scheduler = self.scheduler_for_call(thresholding, dynamic_thresholding_ratio)
        if latents is None:
            config = self.unet.config
            shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        latents = self.checked_latents(latents, batch_size) * scheduler.init_noise_sigma
        set_distinct_timesteps(scheduler, num_inference_steps, self.device)
        step_kwargs = self._step_kwargs(scheduler, generator, eta, use_clipped_model_output)
        yield from self.denoising_loop(scheduler, latents, scheduler.timesteps, class_labels, guidance_scale,
                                       classifier_scale, step_kwargs)  # fmt: skip

    def denoising_loop(self, scheduler, latents, timesteps, class_labels, guidance_scale, classifier_scale, step_kwargs):
        """From `latents` at the level of timesteps[0] down to x0, one guided step per timestep; yields
        (i, t, latents, pred_original_sample) after each. Sampling, reconstruction and variations all run it."""
        for i, t in enumerate(self.progress_bar(timesteps)):
            latents, x0 = self.guided_step(scheduler, latents, t, class_labels, guidance_scale, classifier_scale, step_kwargs)
            replaced = yield i, t, latents, x0
            if replaced is not None:  # a consumer may send back new latents (callbacks do)
                latents = replaced
                yield None  # answer the send(); the loop's next() resumes sampling

    @torch.inference_mode()  # callbacks run inside it too, so they may edit the latents in place
    def __call__(self, batch_size: int = 1, class_labels=None, guidance_scale: float = 1.0, classifier_scale: float = 0.0,
                 num_inference_steps: int = 50, eta: float = 0.0, use_clipped_model_output: bool = True,
                 thresholding: str | None = None, dynamic_thresholding_ratio: float | None = None, generator=None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 return_trajectory: bool = False, callback_on_step_end=None):  # fmt: skip
        """Sample `batch_size` images. `guidance_scale` w: classifier-free guidance (0 unconditional, 1 the
        conditional model, > 1 CFG); `classifier_scale` s: classifier guidance towards `class_labels`;
        `thresholding` overrides the scheduler's x0 clipping for this call; with `use_clipped_model_output` DDIM
        re-derives eps from the clipped x0, as ADM's DDIM does (diffusers' DDIMPipeline defaults to False), which
        keeps large guidance from pushing x the wrong way once x0 is clipped. `callback_on_step_end(pipe, i, t,
        {"latents", "pred_original_sample"})` is called after each step; a dict it returns may replace "latents"."""
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        steps = self.iterate(batch_size, class_labels, guidance_scale, classifier_scale, num_inference_steps, eta,
                             use_clipped_model_output, thresholding, dynamic_thresholding_ratio, generator, latents)  # fmt: skip
        trajectory, final = [], None
        for i, t, latents, x0 in steps:
            if return_trajectory:
                trajectory.append({"timestep": int(t), "latents": ordinary(latents.cpu()),
                                   "pred_original_sample": None if x0 is None else ordinary(x0.cpu())})  # fmt: skip
            if callback_on_step_end is not None:
                returned = callback_on_step_end(self, i, t, {"latents": latents, "pred_original_sample": x0})
                if isinstance(returned, dict) and "latents" in returned:
                    latents = returned["latents"]
                    steps.send(latents)
            final = latents
        images = self.postprocess(self.decode(final), output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, trajectory=trajectory if return_trajectory else None)

    def checked_latents(self, latents, batch_size: int) -> torch.Tensor:
        """Latents given by a caller, on the pipeline's device and dtype: a floating torch tensor of the UNet's
        shape (any float dtype is cast; NumPy arrays, integer tensors and other shapes are refused)."""
        config = self.unet.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        if not torch.is_tensor(latents) or not latents.is_floating_point():
            raise ValueError(f"`latents` must be a floating-point torch.Tensor of shape {shape}; got "
                             f"{type(latents).__name__}{'' if not torch.is_tensor(latents) else ' of ' + str(latents.dtype)}.")  # fmt: skip
        if tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}; got {tuple(latents.shape)}.")
        return latents.to(self.device, self.unet.dtype)

    # ------------------------------------------------------------------------------------ latent space
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> what the UNet diffuses: themselves, or with a VAE the scaled posterior mean
        z = E(x).mean * scaling_factor (unit variance, like the noise)."""
        return to_latents(self.vae, images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """What the UNet diffuses -> images in [-1, 1]: themselves, or with a VAE x = D(z / scaling_factor)."""
        return from_latents(self.vae, latents)

    @staticmethod
    def _step_kwargs(scheduler, generator, eta, use_clipped_model_output):
        return step_kwargs(scheduler, generator, eta, use_clipped_model_output)

    @staticmethod
    def postprocess(latents: torch.Tensor, output_type: str):
        """[-1, 1] -> [0, 1] images as PIL, NumPy (N, H, W, C) or torch (N, C, H, W)."""
        return latents_to_images(latents, output_type)
