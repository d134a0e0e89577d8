"""Imagen-style text-to-image (Saharia 2022): a frozen pretrained text encoder, a UNet that attends to its token
states through cross-attention, classifier-free guidance with dynamic thresholding."""

import logging
from collections import Counter
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from ..models.safetensors_only import safetensors_kwargs
from ..schedulers.validation import check_choice, check_range
from ..guiders import PREDICTIONS, Guider, guider_for_call
from .denoising import Conditioning, denoise, needed_conditionings, plan, run
from .image_utils import latents_to_images
from .latent_space import from_latents
from .pipeline_guided import GuidedPipelineOutput
from .samplers import private_scheduler, set_distinct_timesteps, step_kwargs
from .text_encoding import ATTENTION_MASKS, DEFAULT_TEXT_ENCODER, encode_prompts, hidden_size, load_text_encoder

logger = logging.getLogger(__name__)

class TextToImagePipeline(DiffusionPipeline):
    """(tokenizer, text_encoder, unet, scheduler). The unconditional prediction (CFG's and every guider's) is the
    empty caption "" (what caption dropout trains on) or `negative_prompt`.

    `save_pretrained(folder)` leaves the frozen encoder out and records its name (`text_encoder_id`);
    `from_pretrained` loads it from the installed package or the Hub by that name. A folder saved with
    `include_text_encoder=True` carries its own `text_encoder/` and `tokenizer/` and loads from those.

    With a `vae` the UNet works in its latent space (latent diffusion, as Stable Diffusion) and images are decoded
    at the end, x = D(z / scaling_factor); sample latent models with `thresholding="none"` (clipping is for pixels).

    `from_pretrained` of a Stable Diffusion folder (model_index.json: StableDiffusionPipeline) uses its own
    components and encodes prompts as StableDiffusionPipeline does (`foreign_text_options`), so that with plain CFG
    and the folder's scheduler the images equal the stock pipeline's for the same seed.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["tokenizer", "text_encoder", "vae"]

    def __init__(self, tokenizer, text_encoder, unet: UNet2DConditionModel, scheduler,
                 text_encoder_id: str = DEFAULT_TEXT_ENCODER, max_length: int = 24, vae=None,
                 attention_mask: str = "both"):  # fmt: skip
        super().__init__()
        check_choice("attention_mask", attention_mask, ATTENTION_MASKS)
        if text_encoder is not None and hidden_size(text_encoder) != unet.config.cross_attention_dim:
            raise ValueError(f"The text encoder's hidden size ({hidden_size(text_encoder)}) must equal the UNet's "
                             f"`cross_attention_dim` ({unet.config.cross_attention_dim}).")  # fmt: skip
        if vae is not None and vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(f"The VAE's {vae.config.latent_channels} latent channels must be the UNet's "
                             f"{unet.config.in_channels} input channels.")  # fmt: skip
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, vae=vae)
        self.register_to_config(text_encoder_id=text_encoder_id, max_length=max_length, attention_mask=attention_mask)

    def text_options(self) -> dict:
        """The non-module arguments of __init__, as configured: to rebuild the pipeline with other parts."""
        return {name: self.config[name] for name in ("text_encoder_id", "max_length", "attention_mask")}

    # ------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory, include_text_encoder: bool = False, **kwargs):
        if include_text_encoder:
            return super().save_pretrained(save_directory, **kwargs)
        without = type(self)(None, None, self.unet, self.scheduler, vae=self.vae, **self.text_options())
        return DiffusionPipeline.save_pretrained(without, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        folder = Path(pretrained_model_name_or_path)
        has_encoder = (folder / "text_encoder").is_dir() if folder.is_dir() else False
        if not has_encoder and "text_encoder" not in kwargs:
            config = cls.load_config(pretrained_model_name_or_path)
            kwargs["tokenizer"], kwargs["text_encoder"] = load_text_encoder(config.get("text_encoder_id", DEFAULT_TEXT_ENCODER))
        kwargs = safetensors_kwargs(pretrained_model_name_or_path, kwargs)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe.text_encoder.requires_grad_(False).eval()
        foreign = foreign_text_options(cls.load_config(pretrained_model_name_or_path), pipe.tokenizer, pipe.text_encoder)
        if foreign:
            pipe.register_to_config(**foreign)
        return pipe

    # ------------------------------------------------------------------------------------------ text
    def encode(self, prompts: list[str]):
        """(token states, attention mask) of the prompts."""
        return encode_prompts(self.tokenizer, self.text_encoder, prompts, self.config.max_length,
                              self.config.get("attention_mask", "both"))  # fmt: skip

    def check_inputs(self, prompt, negative_prompt, num_images_per_prompt, output_type):
        """Every bad argument raises ValueError before any network runs. Returns (prompts, negative prompts)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if prompt is not None else []
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"`prompt` must be a non-empty string or a list of them; got {prompt!r}.")
        negatives = [""] * len(prompts) if negative_prompt is None else \
            [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)  # fmt: skip
        if len(negatives) != len(prompts):
            raise ValueError(f"`negative_prompt` must be one string or {len(prompts)} (one per prompt); got {len(negatives)}.")
        check_range("num_images_per_prompt", num_images_per_prompt, low=1, integer=True)
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("This pipeline has no text encoder: load it with `from_pretrained`, or pass one.")
        return prompts, negatives

    def conditioning(self, prompts, negatives, num_images_per_prompt: int, needed: set) -> Conditioning:
        """Cross-attention context and mask per prediction: the prompts for the conditional one, the negative
        prompts ("" by default) for the unconditional one; only the needed texts are encoded, in one call."""
        texts = {"pred_uncond": negatives, "pred_cond": prompts}
        wanted = [name for name in PREDICTIONS if name in needed]
        states, mask = self.encode([text for name in wanted for text in texts[name]])
        branches = {}
        for index, name in enumerate(wanted):
            rows = slice(index * len(prompts), (index + 1) * len(prompts))
            branches[name] = {"encoder_hidden_states": states[rows].repeat_interleave(num_images_per_prompt, 0)}
            if mask is not None:  # the UNet ignores padding tokens (ours); SD and IF attend to all of them
                branches[name]["encoder_attention_mask"] = mask[rows].repeat_interleave(num_images_per_prompt, 0)
        return Conditioning(self.unet, branches)

    # ------------------------------------------------------------------------------------------ sample
    @torch.inference_mode()
    def __call__(self, prompt, negative_prompt=None, num_images_per_prompt: int = 1, guidance_scale: float | None = None,
                 num_inference_steps: int = 50, eta: float = 0.0, thresholding: str | None = None,
                 dynamic_thresholding_ratio: float | None = None, generator=None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None, guider=None):  # fmt: skip
        """Images for `prompt` (one string or a list). Guidance: `guider` (ours or diffusers'), or the shorthand
        `guidance_scale` w (default 5), CFG (Ho & Salimans 2022): eps = eps(x, "") + w (eps(x, prompt) - eps(x, "")),
        with `negative_prompt` in place of "". `thresholding` ("none", "static", "dynamic") overrides the scheduler's
        x0 clipping for this call; Imagen pairs large w with "dynamic". `callback_on_step_end(pipe, i, t,
        {"latents", "pred_original_sample"})` runs after each step. The output's `evaluations` counts the network
        evaluations made."""
        guider = guider_for_call(guider, guidance_scale, default_guidance_scale=5.0)
        prompts, negatives = self.check_inputs(prompt, negative_prompt, num_images_per_prompt, output_type)
        check_range("eta", eta, low=0)
        # private_scheduler checks `thresholding`, still before any network runs
        scheduler = private_scheduler(self.scheduler, thresholding, dynamic_thresholding_ratio)
        if isinstance(guider, Guider):
            guider.check(scheduler, has_classifier=False, eta=eta)
        set_distinct_timesteps(scheduler, num_inference_steps, self.device)  # checks the step count before the encoder
        every_prediction = Conditioning(self.unet, dict.fromkeys(PREDICTIONS))
        steps = plan(guider, every_prediction, scheduler, scheduler.timesteps)
        conditioning = self.conditioning(prompts, negatives, num_images_per_prompt, needed_conditionings(steps))
        batch = len(prompts) * num_images_per_prompt
        latents = self.prepare_latents(batch, generator, latents) * scheduler.init_noise_sigma
        options = step_kwargs(scheduler, generator, eta, True)
        evaluations = Counter()
        loop = denoise(guider, conditioning, scheduler, latents, scheduler.timesteps, options, self.progress_bar, evaluations)
        images = latents_to_images(from_latents(self.vae, run(self, loop, callback_on_step_end)), output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, evaluations=dict(evaluations))

    def prepare_latents(self, batch: int, generator, latents):
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        shape = (batch, self.unet.config.in_channels, height, width)
        if latents is None:
            return randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        if tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}; got {tuple(latents.shape)}.")
        return latents.to(self.device, self.unet.dtype)


def foreign_text_options(config: dict, tokenizer, text_encoder) -> dict:
    """How a folder saved by another diffusers pipeline encodes prompts, as config of ours ({} for our own folders).
    StableDiffusionPipeline: prompts padded to the tokenizer's `model_max_length` (CLIP: 77), the encoder given the
    padding mask only if its config sets `use_attention_mask`, the UNet attending to every token."""
    if config.get("_class_name") != "StableDiffusionPipeline":
        return {}
    if config.get("safety_checker", [None])[0] is not None:
        logger.warning("This Stable Diffusion folder has a safety checker; TextToImagePipeline does not run it.")
    masked = bool(getattr(text_encoder.config, "use_attention_mask", False))
    return {"max_length": tokenizer.model_max_length, "attention_mask": "encoder" if masked else "none"}
