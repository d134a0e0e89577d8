"""Train a UNet2DModel diffusion model on real data with accelerate.

    accelerate launch training/train_unet.py --dataset_name mnist --class_conditional --output_dir runs/mnist
    python training/train_unet.py ...            (one process)

The output folder becomes a complete pipeline (model_index.json, unet/ with the EMA weights, scheduler/) with a
model card; `checkpoint-N/` folders beside it let an interrupted run continue with --resume_from_checkpoint latest.
"""

from pathlib import Path

import torch

from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training import args as flags
from guided_diffusers.training.checkpointing import resolve_resume
from guided_diffusers.training.latents import encode_images, load_vae
from guided_diffusers.training.losses import make_loss
from guided_diffusers.training.loop import train
from guided_diffusers.training.model_card import dataset_label, training_section
from guided_diffusers.training.model_configs import build_unet, unet_config
from guided_diffusers.training.runtime import (
    finish_output,
    load_training_data,
    log_sample_grid,
    make_accelerator,
    prepare_training,
    report_weights_checksum,
    swapped_in_ema,
)


def parse_args(argv=None):
    parser = flags.build_parser(__doc__.split("\n")[1], flags.DATA, flags.OPTIMISATION, flags.RUN, flags.DIFFUSION,
                                flags.LATENT)  # fmt: skip
    args = parser.parse_args(argv)
    flags.check_common(args)
    flags.check_latent(args)
    unet_config(args.model_config, args.diffused_size, args.diffused_channels)  # bad preset or size: fail now
    args.resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    args.command = flags.recorded_command("accelerate launch", "training/train_unet.py", argv)
    return args


def sample_grid(unet, noise_scheduler, args, num_classes: int, vae=None):
    """A grid of DDIM samples (one row per class for conditional models) with fixed seeds."""
    null_class = num_classes if num_classes else None
    pipeline = GuidedDiffusionPipeline(unet, GuidedDDIMScheduler.from_config(noise_scheduler.config), null_class_label=null_class,
                                       vae=vae)  # fmt: skip
    pipeline.set_progress_bar_config(disable=True)
    rows = min(num_classes, args.eval_batch_size) if num_classes else 1
    per_row = max(args.eval_batch_size // rows, 1)
    labels = torch.arange(rows).repeat_interleave(per_row) if num_classes else None
    images = pipeline(batch_size=rows * per_row, class_labels=labels, num_inference_steps=args.ddpm_num_inference_steps,
                      generator=torch.Generator().manual_seed(args.seed), output_type="np").images  # fmt: skip
    return make_grid(images, rows=rows, scale=2)


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    dataset, data = load_training_data(args)
    if args.class_conditional and data.labels is None:
        raise ValueError("--class_conditional needs a label column (a ClassLabel feature, or --label_column).")
    num_classes = len(data.class_names) if args.class_conditional else 0
    vae = None if args.vae is None else load_vae(args.vae)
    latents = None if vae is None else encode_images(vae, data.images)  # once, before training
    noise_scheduler = GuidedDDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule,
        prediction_type=args.prediction_type, variance_type=args.variance_type,
        clip_sample=vae is None,  # clipping x0 to [-1, 1] is for pixels; latents have no such range
    )  # fmt: skip
    torch.manual_seed(args.seed)  # the initial weights
    unet = build_unet(unet_config(args.model_config, args.diffused_size, args.diffused_channels, num_classes,
                                  learned_variance=args.variance_type == "learned_range"))  # fmt: skip
    unet, optimizer, lr_scheduler, ema, state = prepare_training(args, accelerator, unet, len(data), "train_unet")

    def log_images(step):
        with swapped_in_ema(ema, unet):
            grid = sample_grid(accelerator.unwrap_model(unet), noise_scheduler, args, num_classes, vae)
        log_sample_grid(accelerator, args, grid, step)

    compute_loss = make_loss(noise_scheduler, data, args, accelerator.device, latents)
    state = train(accelerator, unet, optimizer, lr_scheduler, ema, compute_loss, len(data), args, state, log_images)

    accelerator.wait_for_everyone()
    report_weights_checksum(accelerator, unet)
    if accelerator.is_main_process:
        save_pipeline(accelerator.unwrap_model(unet), ema, noise_scheduler, data, dataset, args, state, num_classes, vae)
    accelerator.end_training()


def save_pipeline(unet, ema, noise_scheduler, data, dataset, args, state, num_classes, vae=None):
    """The output folder: a GuidedDiffusionPipeline with the EMA weights, a sample grid and a model card."""
    if ema is not None:
        ema.copy_to(unet.parameters())
    pipeline = GuidedDiffusionPipeline(unet=unet, scheduler=noise_scheduler, null_class_label=num_classes or None,
                                       class_names=data.class_names if num_classes else None, vae=vae)  # fmt: skip
    pipeline.save_pretrained(args.output_dir)
    sample_grid(unet, noise_scheduler, args, num_classes, vae).save(Path(args.output_dir, "samples.png"))
    name = dataset_label(args)
    conditioning = f"class-conditional ({num_classes} classes + a null class, label dropout {args.label_dropout})"
    sections = {
        "Model": f"A {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M-parameter `UNet2DModel` "
        f"({args.model_config} preset), {conditioning if num_classes else 'unconditional'}, predicting "
        f"`{args.prediction_type}` with `{args.variance_type}` variance on a {args.ddpm_num_steps}-step "
        f"`{args.ddpm_beta_schedule}` schedule, at {args.resolution}x{args.resolution}x{args.channels}"
        + (f", in the {args.diffused_channels}x{args.diffused_size}x{args.diffused_size} latent space of the "
           f"autoencoder `{args.vae}` (latent diffusion; stored as `vae/`, x0 clipping off)." if vae else "."),
        "Usage": "```python\nfrom guided_diffusers.pipelines import GuidedDiffusionPipeline\n"
        "pipe = GuidedDiffusionPipeline.from_pretrained(\"path/or/repo_id\")\n"
        "images = pipe(batch_size=4, class_labels=[3], guidance_scale=3.0, num_inference_steps=50).images\n```",
        "Training": training_section(args, state, len(data)),
        "Samples": "DDIM, 50 steps, guidance scale 1 (one row per class):\n\n![samples](samples.png)",
    }
    finish_output(args, title=f"guided-diffusers {name} UNet", sections=sections, pipeline_tag="unconditional-image-generation",
                  tags=["diffusers", "ddpm", "class-conditional" if num_classes else "unconditional"], datasets=[name])  # fmt: skip


if __name__ == "__main__":
    main()
