"""Unconditional and class-conditional sampling with classifier-free and classifier guidance, for our schedulers
and diffusers' own."""

from collections import Counter
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

# diffusers loads a pipeline component only from a module that is already imported: import the classifier's
# module here so that `GuidedDiffusionPipeline.from_pretrained` finds the `classifier/` of a saved folder
from ..models import noise_aware_classifier, noise_aware_clip  # noqa: F401
from ..models.mixed_class_embedding import with_mixed_class_embedding
from ..models.safetensors_only import SafetensorsOnly
from ..guiders import Guider, guider_for_call
from ..schedulers.validation import check_choice, check_range
from .clip_conditioning import check_clip_model, checked_prompts, clip_text_embeds
from .denoising import WEAK, Conditioning, denoise, plan, run
from .image_utils import latents_to_images
from .inference import ordinary
from .inversion import InversionMixin
from .latent_space import from_latents, to_latents
from .samplers import private_scheduler, set_distinct_timesteps, step_kwargs, warn_if_latent


@dataclass
class GuidedPipelineOutput(ImagePipelineOutput):
    """`images`, plus per-step latents and x0 predictions when `return_trajectory=True`, and `evaluations`: the
    network evaluations made ("unet": one per prediction over the batch, "unet_calls", "classifier")."""

    trajectory: list | None = None
    evaluations: dict | None = None


class GuidedDiffusionPipeline(SafetensorsOnly, InversionMixin, DiffusionPipeline):
    """Sampling from a `UNet2DModel`, optionally guided.

    - A class-conditional UNet trained with label dropout has a null class ("no label", `null_class_label`, the
      last embedding), which classifier-free guidance needs.
    - `classifier` (optional): a noise-aware classifier p(y | x_t, t) on the same noise schedule, for classifier
      guidance (`guiders.ClassifierGuidance`). With our DDPM scheduler it shifts the mean (ADM Algorithm 1); with
      any other scheduler it corrects eps (ADM Algorithm 2), so diffusers' DDIM, DPM-Solver or Euler get it too.
    - Guidance is a guider (`guided_diffusers.guiders`, or diffusers' own) applied by the shared loop of
      `pipelines.denoising`; `guidance_scale=` / `classifier_scale=` are shorthands for ours.
    - `clean_classifier` (optional): a classifier of clean images (a `NoiseAwareClassifier` trained with
      `--noise_free`), for universal guidance through x0_hat(x_t) (`guiders.UniversalClassifierGuidance`, Bansal
      et al. 2023).
    - `weak_unet` (optional): a smaller or shorter-trained `UNet2DModel` of the same data, conditioning and
      schedule, for autoguidance (`guiders.WeakModelGuidance`, Karras et al. 2024).
    - `vae` (optional): an `AutoencoderKL` whose latent space the UNet (and classifier) work in, latent diffusion
      (Rombach 2022); images are decoded at the end, x = D(z / scaling_factor). Thresholding is for pixel ranges,
      so latent models are trained with clipping off and should be sampled with `thresholding="none"`.
    - `invert`, `reconstruct`, `interpolate` and `variations` (DDIM inversion and SDEdit) come from
      `InversionMixin`.
    """

    model_cpu_offload_seq = "unet->weak_unet->vae"
    _optional_components = ["classifier", "vae", "weak_unet", "clean_classifier", "clip_model"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, classifier=None, null_class_label: int | None = None,
                 class_names: list[str] | None = None, vae=None, weak_unet: UNet2DModel | None = None,
                 clean_classifier=None, clip_model=None):  # fmt: skip
        super().__init__()
        embeddings = unet.config.num_class_embeds
        if null_class_label is not None and null_class_label != (embeddings or 0) - 1:
            raise ValueError(f"`null_class_label` must be the last class embedding ({(embeddings or 0) - 1}); got {null_class_label}.")
        if vae is not None and vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(f"The VAE's {vae.config.latent_channels} latent channels must be the UNet's "
                             f"{unet.config.in_channels} input channels.")  # fmt: skip
        check_weak_unet(weak_unet, unet)
        self.register_modules(unet=unet, scheduler=scheduler, classifier=classifier, vae=vae, weak_unet=weak_unet,
                              clean_classifier=clean_classifier, clip_model=clip_model)  # fmt: skip
        self._clip_text_encoder = None  # (tokenizer, encoder) that clip_model reads, loaded on first use
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
    def check_inputs(self, batch_size, class_labels, guider, output_type, scheduler=None, eta: float = 0.0,
                     prompt=None):  # fmt: skip
        """Every bad argument raises ValueError here, before any network runs. Returns the labels as a tensor
        (None for none) and the `Conditioning` that makes each prediction (with CLIP guidance, its `clip_model`;
        `with_clip_embeds` adds the prompts' embeddings once sampling is planned)."""
        batch_size = images_asked(batch_size, class_labels)
        check_range("batch_size", batch_size, low=1, integer=True)
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        needs_classifier = getattr(guider, "needs_classifier", False)
        if isinstance(guider, Guider):
            guider.check(scheduler or self.scheduler, has_classifier=self.classifier is not None, eta=eta)
        if needs_classifier:
            self._check_classifier()
        if getattr(guider, "needs_clean_classifier", False):
            self._check_clean_classifier()
            needs_classifier = True  # its labels are a classifier's targets too
        labels = self._checked_labels(class_labels, batch_size, needs_classifier)
        conditioning = self.conditioning(labels, batch_size)
        if getattr(guider, "needs_clip", False):
            checked_prompts(prompt, batch_size)
            config = self.unet.config
            check_clip_model(self.clip_model, (config.in_channels, config.sample_size, config.sample_size),
                             (scheduler or self.scheduler).config, self.clip_model and self.clip_model.config.text_encoder_id)  # fmt: skip
            conditioning.clip_model = self.clip_model
        elif prompt is not None:
            raise ValueError("`prompt` is read by CLIP guidance only: pass a guider with CLIPGuidance "
                             "(e.g. guider=CLIPGuidance(clip_scale=...)), or leave `prompt` out.")  # fmt: skip
        return labels, conditioning

    def with_clip_embeds(self, conditioning: Conditioning, prompt, batch_size: int) -> Conditioning:
        """The conditioning with the prompts' `clip_model` embeddings, where CLIP guidance will read them."""
        if conditioning.clip_model is not None:
            prompts = checked_prompts(prompt, batch_size)
            conditioning.clip_text_embeds = clip_text_embeds(self.clip_model, *self.clip_text_encoder(), prompts)
        return conditioning

    def clip_text_encoder(self):
        """(tokenizer, frozen encoder) of `clip_model`'s `text_encoder_id`, loaded once per pipeline."""
        if self._clip_text_encoder is None:
            from .text_encoding import DEFAULT_TEXT_ENCODER, load_text_encoder

            tokenizer, encoder = load_text_encoder(self.clip_model.config.text_encoder_id or DEFAULT_TEXT_ENCODER)
            self._clip_text_encoder = (tokenizer, encoder.to(self.device))
        return self._clip_text_encoder

    def _checked_labels(self, class_labels, batch_size, needs_classifier):
        if class_labels is None:
            if needs_classifier:
                raise ValueError("Classifier guidance needs `class_labels` to guide towards.")
            if self.num_classes and self.config.null_class_label is None:
                raise ValueError("This UNet is class-conditional without a null class: pass `class_labels`.")
            return None
        if not self.num_classes and not needs_classifier:
            raise ValueError("`class_labels` given, but the UNet is unconditional and there is no classifier guidance.")
        if torch.is_tensor(class_labels) and class_labels.is_floating_point():
            return self._check_class_weights(class_labels, batch_size, needs_classifier)
        num_classes = self.num_classes or (self.classifier or self.clean_classifier).config.num_classes
        return class_indices(class_labels, batch_size, num_classes, "or a float tensor of class weights").to(self.device)

    def _check_class_weights(self, weights: torch.Tensor, batch_size: int, needs_classifier: bool) -> torch.Tensor:
        """Float `class_labels` of shape (batch or 1, num_classes): non-negative weights that mix the class
        embeddings (see `models.mixed_class_embedding`). Returned with a zero column for the null class."""
        if not self.num_classes:
            raise ValueError("Float `class_labels` (class weights) need a class-conditional UNet.")
        if needs_classifier:
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
        """The classifier's classes, image size and noise schedule match the UNet's and scheduler's (that there is
        one, `ClassifierGuidance.check` has said)."""
        self._check_reads_the_unets_images("classifier", self.classifier)
        self.classifier.check_schedule(self.scheduler.config)

    def _check_clean_classifier(self):
        if self.clean_classifier is None:
            raise ValueError("Universal guidance (UniversalClassifierGuidance) needs a `clean_classifier`, a classifier "
                             "of clean images; this pipeline has none. Load one with it: `from_pretrained(path, "
                             "clean_classifier=NoiseAwareClassifier.from_pretrained(classifier_path))`.")  # fmt: skip
        self._check_reads_the_unets_images("clean_classifier", self.clean_classifier)

    def _check_reads_the_unets_images(self, name: str, classifier) -> None:
        config, unet = classifier.config, self.unet.config
        if self.num_classes and config.num_classes != self.num_classes:
            raise ValueError(f"`{name}` has {config.num_classes} classes, the UNet {self.num_classes}.")
        if (config.sample_size, config.in_channels) != (unet.sample_size, unet.in_channels):
            raise ValueError(f"`{name}` reads {config.in_channels}x{config.sample_size}px images, the UNet makes "
                             f"{unet.in_channels}x{unet.sample_size}px.")  # fmt: skip

    def scheduler_for_call(self, thresholding: str | None, dynamic_thresholding_ratio: float | None):
        """A private copy of the scheduler for one call (its timesteps and solver history are per call), with the
        thresholding of this call ("none", "static", "dynamic") if given."""
        scheduler = private_scheduler(self.scheduler, thresholding, dynamic_thresholding_ratio)
        warn_if_latent(self.vae, thresholding)
        return scheduler

    # ----------------------------------------------------------------------------------- conditioning
    def conditioning(self, class_labels, batch: int) -> Conditioning:
        """Which class labels make the conditional and unconditional predictions. Without labels the conditional
        prediction is the null class's (unconditional sampling); an unconditional UNet makes only one prediction
        (labels, if any, are classifier guidance's targets). Float class weights call a view of the UNet that
        mixes class embeddings, with the null class as a one-hot row."""
        unet, weak, null_label, missing = self.unet, self.weak_unet, self.config.null_class_label, {}
        if not self.num_classes:
            branches = {"pred_cond": {}}
            missing["pred_uncond"] = "this UNet is unconditional (it has no null class to guide away from)"
        elif null_label is None:
            branches = {"pred_cond": {"class_labels": class_labels}}
            missing["pred_uncond"] = ("this UNet has no null class (`null_class_label` is None): `guidance_scale` != 1 "
                                      "(classifier-free guidance) needs a UNet with a null class; use guidance_scale=1")  # fmt: skip
        else:
            null = torch.full((batch,), null_label, dtype=torch.long, device=self.device)
            if class_labels is not None and class_labels.is_floating_point():
                unet = with_mixed_class_embedding(self.unet)
                weak = None if weak is None else with_mixed_class_embedding(weak)
                null = torch.nn.functional.one_hot(null, self.unet.config.num_class_embeds).to(class_labels.dtype)
            if class_labels is None:
                branches = {"pred_cond": {"class_labels": null}}
                missing["pred_uncond"] = "no `class_labels` were given: guidance needs `class_labels` to guide towards"
            else:
                branches = {"pred_cond": {"class_labels": class_labels}, "pred_uncond": {"class_labels": null}}
        if weak is None:
            missing[WEAK] = ("it has no `weak_unet`: load one with the pipeline, `from_pretrained(path, "
                             "weak_unet=UNet2DModel.from_pretrained(weak_path))`")  # fmt: skip
        return Conditioning(unet, branches, class_labels, self.classifier, self.clean_classifier, missing,
                            {} if weak is None else {WEAK: weak})  # fmt: skip

    # ------------------------------------------------------------------------------------------ sample
    @torch.inference_mode()
    def iterate(
        self,
        batch_size: int | None = None,
        class_labels=None,
        guidance_scale: float | None = None,
        classifier_scale: float | None = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        thresholding: str | None = None,
        dynamic_thresholding_ratio: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        guider=None,
        evaluations: Counter | None = None,
        prompt=None,
    ):
        """Sample step by step: yields (i, t, latents, pred_original_sample) after every step, for streaming.
        Arguments as for `__call__`; all checked before the first step. `evaluations`, a Counter, receives the
        network evaluations made (see `pipelines.denoising`)."""
        guider = guider_for_call(guider, guidance_scale, classifier_scale, default_guidance_scale=1.0)
        batch_size = images_asked(batch_size, class_labels)
        check_range("eta", eta, low=0)  # checked here too: schedulers without eta (DDPM, DPM-Solver) never see it
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"`generator` is a list of {len(generator)} generators; it must have one per image, "
                             f"`batch_size`={batch_size}.")  # fmt: skip
        scheduler = self.scheduler_for_call(thresholding, dynamic_thresholding_ratio)
        _, conditioning = self.check_inputs(batch_size, class_labels, guider, "pt", scheduler, eta, prompt)
        if latents is None:
            config = self.unet.config
            shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        latents = self.checked_latents(latents, batch_size) * scheduler.init_noise_sigma
        set_distinct_timesteps(scheduler, num_inference_steps, self.device)
        plan(guider, conditioning, scheduler, scheduler.timesteps)
        conditioning = self.with_clip_embeds(conditioning, prompt, batch_size)
        options = step_kwargs(scheduler, generator, eta, use_clipped_model_output)
        yield from denoise(guider, conditioning, scheduler, latents, scheduler.timesteps, options, self.progress_bar,
                           evaluations)  # fmt: skip

    @torch.inference_mode()  # callbacks run inside it too, so they may edit the latents in place
    def __call__(self, batch_size: int | None = None, class_labels=None, guidance_scale: float | None = None,
                 classifier_scale: float | None = None, num_inference_steps: int = 50, eta: float = 0.0,
                 use_clipped_model_output: bool = True, thresholding: str | None = None,
                 dynamic_thresholding_ratio: float | None = None, generator=None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, return_trajectory: bool = False,
                 callback_on_step_end=None, guider=None, prompt=None):  # fmt: skip
        """Sample `batch_size` images; without it, one per entry of `class_labels` (as DiTPipeline: `class_labels=
        [1, 7, 7]` gives three images), or one.

        Guidance: `guider`, any guider of `guided_diffusers.guiders` or diffusers' `diffusers.guiders` that needs
        only conditional and unconditional predictions (or a list: `CombinedGuidance`); or the shorthands
        `guidance_scale` w (classifier-free guidance: 0 unconditional, 1 the conditional model, the default, > 1
        CFG) and `classifier_scale` s (classifier guidance towards `class_labels`, ADM). `prompt` (a string, or one
        per image) is what `guiders.CLIPGuidance` steers towards with the pipeline's `clip_model`.

        `thresholding` overrides the scheduler's x0 clipping for this call; with `use_clipped_model_output` DDIM
        re-derives eps from the clipped x0, as ADM's DDIM does (diffusers' DDIMPipeline defaults to False), which
        keeps large guidance from pushing x the wrong way once x0 is clipped. `callback_on_step_end(pipe, i, t,
        {"latents", "pred_original_sample"})` is called after each step; a dict it returns may replace "latents".
        The output's `evaluations` counts the network evaluations made."""
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        evaluations = Counter()
        steps = self.iterate(batch_size, class_labels, guidance_scale, classifier_scale, num_inference_steps, eta,
                             use_clipped_model_output, thresholding, dynamic_thresholding_ratio, generator, latents,
                             guider, evaluations, prompt)  # fmt: skip
        trajectory = []

        def record(i, t, latents, x0):
            trajectory.append({"timestep": int(t), "latents": ordinary(latents.cpu()),
                               "pred_original_sample": None if x0 is None else ordinary(x0.cpu())})  # fmt: skip

        final = run(self, steps, callback_on_step_end, record if return_trajectory else None)
        images = self.postprocess(self.decode(final), output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, trajectory=trajectory if return_trajectory else None,
                                    evaluations=dict(evaluations))  # fmt: skip

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
    def postprocess(latents: torch.Tensor, output_type: str):
        """[-1, 1] -> [0, 1] images as PIL, NumPy (N, H, W, C) or torch (N, C, H, W)."""
        return latents_to_images(latents, output_type)


def class_indices(class_labels, batch_size: int, num_classes: int, alternative: str = "") -> torch.Tensor:
    """`class_labels` (one, or one per image) as a (batch_size,) long tensor of indices in [0, num_classes - 1];
    anything else raises ValueError (`alternative`: what else the caller takes, for the message)."""
    labels = torch.as_tensor(class_labels)
    if labels.ndim > 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"`class_labels` must be integer class indices (a list or 1-D tensor)"
                         f"{', ' + alternative if alternative else ''}; got {class_labels!r}.")  # fmt: skip
    labels = labels.to(torch.long).reshape(-1)
    labels = labels.expand(batch_size) if len(labels) == 1 else labels
    if len(labels) != batch_size:
        raise ValueError(f"`class_labels` must have 1 or `batch_size`={batch_size} entries; got {len(labels)}. "
                         f"Leave `batch_size` out to get one image per label.")  # fmt: skip
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"`class_labels` must lie in [0, {num_classes - 1}]; got {labels.tolist()}.")
    return labels


def images_asked(batch_size, class_labels):
    """How many images a call makes. DiTPipeline's rule: n class labels (or n rows of class weights) give n images,
    so `batch_size` may be left out; without it, one label or none gives one image. A `batch_size` given is kept
    (checked later, with a list of labels that must agree with it)."""
    if batch_size is not None:
        return batch_size
    if class_labels is None:
        return 1
    try:
        labels = class_labels if torch.is_tensor(class_labels) else torch.as_tensor(class_labels)
    except (TypeError, ValueError, RuntimeError):
        return 1  # not labels at all: `_checked_labels` says so
    if labels.is_floating_point():
        return len(labels) if labels.ndim == 2 else 1
    return len(labels) if labels.ndim == 1 and len(labels) > 0 else 1


def check_weak_unet(weak_unet, unet) -> None:
    """Autoguidance compares two models' predictions of the same thing: the weak UNet must read and write the same
    tensors and take the same class labels."""
    if weak_unet is None:
        return
    if not isinstance(weak_unet, UNet2DModel):
        raise ValueError(f"`weak_unet` must be a UNet2DModel; got {type(weak_unet).__name__}.")
    for key in ("sample_size", "in_channels", "out_channels", "num_class_embeds"):
        if weak_unet.config[key] != unet.config[key]:
            raise ValueError(f"`weak_unet` must match the UNet's {key} ({unet.config[key]}); got {weak_unet.config[key]}.")
