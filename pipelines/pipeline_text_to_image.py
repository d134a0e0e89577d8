"""Imagen-style text-to-image (Saharia 2022): a frozen pretrained text encoder, a UNet that attends to its token
states through cross-attention, classifier-free guidance with dynamic thresholding."""

import logging
from collections import Counter

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

# diffusers loads a pipeline component only from a module that is already imported (`clip_model/`)
from ..models import noise_aware_clip  # noqa: F401
from ..schedulers.validation import check_choice, check_range
from ..guiders import PREDICTIONS, Guider, guider_for_call
from .clip_conditioning import check_clip_model, clip_text_embeds
from .denoising import Conditioning, denoise, needed_conditionings, plan, run
from .image_utils import latents_to_images
from .latent_space import from_latents
from .pipeline_guided import GuidedPipelineOutput
from .samplers import private_scheduler, set_distinct_timesteps, step_kwargs, warn_if_latent
from .text_encoding import (
    ATTENTION_MASKS, DEFAULT_TEXT_ENCODER, PROMPT_PREPROCESSING, FrozenTextEncoderFolder, encode_prompts, hidden_size,
    preprocess_prompts, text_width,
)  # fmt: skip

logger = logging.getLogger(__name__)

class TextToImagePipeline(FrozenTextEncoderFolder, DiffusionPipeline):
    """(tokenizer, text_encoder, unet, scheduler). The unconditional prediction (CFG's and every guider's) is the
    empty caption "" (what caption dropout trains on) or `negative_prompt`.

    `save_pretrained(folder)` leaves the frozen encoder out and records its name (`text_encoder_id`);
    `from_pretrained` loads it from the installed package or the Hub by that name. A folder saved with
    `include_text_encoder=True` carries its own `text_encoder/` and `tokenizer/` and loads from those.

    With a `vae` the UNet works in its latent space (latent diffusion, as Stable Diffusion) and images are decoded
    at the end, x = D(z / scaling_factor); sample latent models with `thresholding="none"` (clipping is for pixels).

    `from_pretrained` of a Stable Diffusion or DeepFloyd IF folder (model_index.json: StableDiffusionPipeline,
    IFPipeline) uses its own components and encodes prompts as the stock pipeline does (`foreign_text_options`), so
    that with plain CFG and the folder's scheduler the images equal the stock pipeline's for the same seed.

    `clip_model` (optional): a noise-aware `NoiseAwareCLIP` on the UNet's inputs (latents for a latent model) and
    noise schedule, reading the same frozen encoder's token states, for CLIP guidance towards the prompt
    (`guiders.CLIPGuidance`, GLIDE), alone or after CFG.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["tokenizer", "text_encoder", "vae", "clip_model"]

    def __init__(self, tokenizer, text_encoder, unet: UNet2DConditionModel, scheduler,
                 text_encoder_id: str = DEFAULT_TEXT_ENCODER, max_length: int = 24, vae=None,
                 attention_mask: str = "both", prompt_preprocessing: str = "none", clip_model=None):  # fmt: skip
        super().__init__()
        check_choice("attention_mask", attention_mask, ATTENTION_MASKS)
        check_choice("prompt_preprocessing", prompt_preprocessing, PROMPT_PREPROCESSING)
        reads = text_width(unet)
        if text_encoder is not None and hidden_size(text_encoder) != reads:
            raise ValueError(f"The text encoder's hidden size ({hidden_size(text_encoder)}) must equal the UNet's "
                             f"`cross_attention_dim` (or `encoder_hid_dim` where set) ({reads}).")  # fmt: skip
        if vae is not None and vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(f"The VAE's {vae.config.latent_channels} latent channels must be the UNet's "
                             f"{unet.config.in_channels} input channels.")  # fmt: skip
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, vae=vae,
                              clip_model=clip_model)  # fmt: skip
        self.register_to_config(text_encoder_id=text_encoder_id, max_length=max_length, attention_mask=attention_mask,
                                prompt_preprocessing=prompt_preprocessing)  # fmt: skip

    # ------------------------------------------------------------------------------------ save / load
    def without_text_encoder(self):
        return type(self)(None, None, self.unet, self.scheduler, vae=self.vae, clip_model=self.clip_model,
                          **self.text_options())  # fmt: skip

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        foreign = foreign_text_options(cls.load_config(pretrained_model_name_or_path), pipe.tokenizer, pipe.text_encoder)
        if foreign:
            pipe.register_to_config(**foreign)
        return pipe

    # ------------------------------------------------------------------------------------------ text
    def encode(self, prompts: list[str], max_length: int | None = None):
        """(token states, the UNet's attention mask or None) of the prompts, padded to `max_length` tokens (default
        the pipeline's)."""
        prompts = preprocess_prompts(prompts, self.config.get("prompt_preprocessing", "none"))
        return encode_prompts(self.tokenizer, self.text_encoder, prompts, max_length or self.config.max_length,
                              self.config.get("attention_mask", "both"))  # fmt: skip

    def check_inputs(self, prompt, negative_prompt, num_images_per_prompt, output_type, prompt_embeds=None,
                     negative_prompt_embeds=None):  # fmt: skip
        """Every bad argument raises ValueError before any network runs. Returns (prompts, negative prompts): the
        prompts are None when `prompt_embeds` stand in for them."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("Pass `prompt` or `prompt_embeds`, exactly one of them.")
        if prompt_embeds is not None:
            count = len(self._checked_embeds("prompt_embeds", prompt_embeds))
            prompts = None
        else:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else []
            if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
                raise ValueError(f"`prompt` must be a non-empty string or a list of them; got {prompt!r}.")
            count = len(prompts)
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass `negative_prompt` or `negative_prompt_embeds`, not both.")
        if negative_prompt_embeds is not None:
            self._checked_embeds("negative_prompt_embeds", negative_prompt_embeds)
            if prompt_embeds is None or negative_prompt_embeds.shape != prompt_embeds.shape:
                raise ValueError(f"`negative_prompt_embeds` must come with `prompt_embeds` of the same shape; got "
                                 f"{tuple(negative_prompt_embeds.shape)} and "
                                 f"{None if prompt_embeds is None else tuple(prompt_embeds.shape)}.")  # fmt: skip
        negatives = [""] * count if negative_prompt is None else \
            [negative_prompt] * count if isinstance(negative_prompt, str) else list(negative_prompt)  # fmt: skip
        if len(negatives) != count or not all(isinstance(n, str) for n in negatives):
            raise ValueError(f"`negative_prompt` must be one string or {count} (one per prompt); got {negative_prompt!r}.")
        check_range("num_images_per_prompt", num_images_per_prompt, low=1, integer=True)
        check_choice("output_type", output_type, ("pil", "np", "pt"))
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("This pipeline has no text encoder: load it with `from_pretrained`, or pass one.")
        return prompts, negatives

    def _checked_embeds(self, name: str, embeds) -> torch.Tensor:
        """Token states given in place of a prompt: a finite float (batch, tokens, width) tensor, the width the UNet
        reads."""
        width = text_width(self.unet)
        if not torch.is_tensor(embeds) or not embeds.is_floating_point() or embeds.ndim != 3 or embeds.shape[-1] != width:
            shape = tuple(embeds.shape) if torch.is_tensor(embeds) else type(embeds).__name__
            raise ValueError(f"`{name}` must be a float tensor (batch, tokens, {width}); got {shape}.")
        if len(embeds) == 0 or not torch.isfinite(embeds).all():
            raise ValueError(f"`{name}` must hold at least one row, all finite.")
        return embeds

    def conditioning(self, prompts, negatives, num_images_per_prompt: int, needed: set, prompt_embeds=None,
                     negative_prompt_embeds=None) -> Conditioning:  # fmt: skip
        """Cross-attention context (and, for our own models, the padding mask) per prediction: the prompts for the
        conditional one, the negative prompts ("" by default) for the unconditional one, or the embeddings given in
        their place; only the needed texts are encoded, in one call. With embeddings the UNet attends to every token,
        as Stable Diffusion and IF do (the mask is a property of tokens, which embeddings no longer carry)."""
        texts = {"pred_uncond": negatives, "pred_cond": prompts}
        given = {"pred_uncond": negative_prompt_embeds, "pred_cond": prompt_embeds}
        wanted = [name for name in PREDICTIONS if name in needed]
        encoded = [name for name in wanted if given[name] is None]
        # "" for the unconditional half beside given embeddings: as long as they are, so the two batch together
        length = None if prompt_embeds is None else prompt_embeds.shape[1]
        states, mask = self.encode([t for name in encoded for t in texts[name]], length) if encoded else (None, None)
        branches = {}
        for name in wanted:
            if given[name] is not None:
                name_states, name_mask = given[name].to(self.device, self.unet.dtype), None
            else:
                rows = slice(encoded.index(name) * len(texts[name]), (encoded.index(name) + 1) * len(texts[name]))
                name_states, name_mask = states[rows], None if mask is None else mask[rows]
            branches[name] = {"encoder_hidden_states": name_states.repeat_interleave(num_images_per_prompt, 0)}
            if name_mask is not None and prompt_embeds is None:  # ours: padding ignored; SD, IF: attend to all
                branches[name]["encoder_attention_mask"] = name_mask.repeat_interleave(num_images_per_prompt, 0)
        return Conditioning(self.unet, branches)

    # ------------------------------------------------------------------------------------------ sample
    @torch.inference_mode()
    def __call__(self, prompt=None, negative_prompt=None, num_images_per_prompt: int = 1,
                 guidance_scale: float | None = None, num_inference_steps: int = 50, eta: float = 0.0,
                 thresholding: str | None = None, dynamic_thresholding_ratio: float | None = None, generator=None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end=None, guider=None, prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None, height: int | None = None,
                 width: int | None = None, callback_on_step_end_tensor_inputs=None):  # fmt: skip
        """Images for `prompt` (one string or a list), or for `prompt_embeds` (token states, batch x tokens x
        width) with optional `negative_prompt_embeds`. Guidance: `guider` (ours or diffusers'), or the shorthand
        `guidance_scale` w (default 5), CFG (Ho & Salimans 2022): eps = eps(x, "") + w (eps(x, prompt) - eps(x, "")),
        with `negative_prompt` in place of "". `thresholding` ("none", "static", "dynamic") overrides the scheduler's
        x0 clipping for this call; Imagen pairs large w with "dynamic". `height` and `width` (pixels; multiples of
        the VAE's and the UNet's downsampling) default to the UNet's size. `generator` may be a list, one per image.
        `callback_on_step_end(pipe, i, t, tensors)` runs after each step, with the tensors named in
        `callback_on_step_end_tensor_inputs` (of "latents", "pred_original_sample"; default both); a dict it returns
        may replace "latents". The output's `evaluations` counts the network evaluations made."""
        guider = guider_for_call(guider, guidance_scale, default_guidance_scale=5.0)
        prompts, negatives = self.check_inputs(prompt, negative_prompt, num_images_per_prompt, output_type,
                                               prompt_embeds, negative_prompt_embeds)  # fmt: skip
        check_range("eta", eta, low=0)
        tensor_inputs = checked_tensor_inputs(callback_on_step_end_tensor_inputs)
        batch = len(negatives) * num_images_per_prompt
        shape = self.latent_shape(batch, height, width)
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"`generator` is a list of {len(generator)} generators; it must have one per image "
                             f"({batch}: prompts x num_images_per_prompt).")  # fmt: skip
        # private_scheduler checks `thresholding`, still before any network runs
        scheduler = private_scheduler(self.scheduler, thresholding, dynamic_thresholding_ratio)
        warn_if_latent(self.vae, thresholding)
        if isinstance(guider, Guider):
            guider.check(scheduler, has_classifier=False, eta=eta)
        if getattr(guider, "needs_clip", False):
            self._check_clip_guidance(prompts, shape, scheduler)
        set_distinct_timesteps(scheduler, num_inference_steps, self.device)  # checks the step count before the encoder
        every_prediction = Conditioning(self.unet, dict.fromkeys(PREDICTIONS))
        steps = plan(guider, every_prediction, scheduler, scheduler.timesteps)
        conditioning = self.conditioning(prompts, negatives, num_images_per_prompt, needed_conditionings(steps),
                                         prompt_embeds, negative_prompt_embeds)  # fmt: skip
        if getattr(guider, "needs_clip", False):
            conditioning.clip_model = self.clip_model
            conditioning.clip_text_embeds = clip_text_embeds(self.clip_model, self.tokenizer, self.text_encoder,
                                                             prompts, num_images_per_prompt)  # fmt: skip
        latents = self.prepare_latents(shape, generator, latents) * scheduler.init_noise_sigma
        options = step_kwargs(scheduler, generator, eta, True)
        evaluations = Counter()
        loop = denoise(guider, conditioning, scheduler, latents, scheduler.timesteps, options, self.progress_bar, evaluations)
        final = run(self, loop, callback_on_step_end, tensor_inputs=tensor_inputs)
        images = latents_to_images(from_latents(self.vae, final), output_type)
        if not return_dict:
            return (images,)
        return GuidedPipelineOutput(images=images, evaluations=dict(evaluations))

    def _check_clip_guidance(self, prompts, shape: tuple, scheduler) -> None:
        """CLIP guidance reads the prompts' text (not given embeddings) with a CLIP that fits this pipeline."""
        if prompts is None:
            raise ValueError("CLIP guidance embeds the prompts' text with `clip_model`: pass `prompt`, not `prompt_embeds`.")
        check_clip_model(self.clip_model, shape[1:], scheduler.config, self.config.text_encoder_id)

    def latent_shape(self, batch: int, height: int | None, width: int | None) -> tuple:
        """(batch, channels, h, w) of what the UNet denoises for `height` x `width` images: divided by the VAE's
        factor for a latent model. Both must be multiples of that factor times the UNet's own downsampling, so that
        its skip connections line up."""
        config = self.unet.config
        size = config.sample_size
        default_h, default_w = (size, size) if isinstance(size, int) else size
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        multiple = vae_factor * 2 ** (len(config.block_out_channels) - 1)
        sides = []
        for name, value, default in (("height", height, default_h), ("width", width, default_w)):
            value = default * vae_factor if value is None else value
            check_range(name, value, low=1, integer=True)
            if value % multiple:
                raise ValueError(f"`{name}` must be a multiple of {multiple} (the VAE's factor {vae_factor} times the "
                                 f"UNet's downsampling) for this model; got {value}.")  # fmt: skip
            sides.append(value // vae_factor)
        return (batch, config.in_channels, *sides)

    def prepare_latents(self, shape: tuple, generator, latents):
        if latents is None:
            return randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        if not torch.is_tensor(latents) or tuple(latents.shape) != shape:
            got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"`latents` must have shape {shape}; got {got}.")
        return latents.to(self.device, self.unet.dtype)

CALLBACK_TENSORS = ("latents", "pred_original_sample")


def checked_tensor_inputs(names) -> tuple:
    """The tensors a step-end callback receives: `callback_on_step_end_tensor_inputs`, or all of them."""
    if names is None:
        return CALLBACK_TENSORS
    if isinstance(names, str) or not all(name in CALLBACK_TENSORS for name in names):
        raise ValueError(f"`callback_on_step_end_tensor_inputs` must be a list of {list(CALLBACK_TENSORS)}; got {names!r}.")
    return tuple(names)


def foreign_text_options(config: dict, tokenizer, text_encoder) -> dict:
    """How a folder saved by another diffusers pipeline encodes prompts, as config of ours ({} for our own folders).
    StableDiffusionPipeline: prompts padded to the tokenizer's `model_max_length` (CLIP: 77), the encoder given the
    padding mask only if its config sets `use_attention_mask`, the UNet attending to every token. IFPipeline: IF's
    caption cleaning, 77 tokens, T5 given the mask, the UNet attending to every token."""
    class_name = config.get("_class_name")
    if class_name not in ("StableDiffusionPipeline", "IFPipeline"):
        return {}
    if config.get("safety_checker", [None])[0] is not None or config.get("watermarker", [None])[0] is not None:
        logger.warning("This %s folder has a safety checker or watermarker; TextToImagePipeline runs neither.", class_name)
    if class_name == "IFPipeline":
        return {"max_length": 77, "attention_mask": "encoder", "prompt_preprocessing": "deepfloyd-if"}
    masked = bool(getattr(text_encoder.config, "use_attention_mask", False))
    return {"max_length": tokenizer.model_max_length, "attention_mask": "encoder" if masked else "none"}
