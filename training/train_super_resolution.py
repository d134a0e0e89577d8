"""Train a super-resolution UNet, a cascade's later stage, with noise-conditioning augmentation, with accelerate.

    accelerate launch training/train_super_resolution.py --dataset_name mnist --low_resolution 14 --output_dir runs/mnist-sr

Each training image x (at --resolution) is area-downsampled to --low_resolution, upsampled back (bilinear) and
noised to a level a ~ U[0, --max_augmentation_level] (Ho et al. 2021, "Cascaded Diffusion Models"; Saharia et al.
2022, Imagen); the UNet learns to denoise x_t given that image and a. --max_augmentation_level 0 trains without
augmentation (the paper's ablation). --class_conditional also tells it the class (a UNet2DConditionModel, labels dropped to a
null class with probability --label_dropout), so that classifier-free guidance applies to this stage too. Same
flags, loop, checkpoints, EMA and logging as train_unet.py; the output folder is a SuperResolutionPipeline with a
model card.
"""

from pathlib import Path

import torch

from guided_diffusers.pipelines import SuperResolutionPipeline
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.pipelines.noise_augmentation import (
    area_downsample, low_resolution_condition, stage_inputs, upsample,
)  # fmt: skip
from guided_diffusers.pipelines.pipeline_super_resolution import DEFAULT_AUGMENTATION_LEVEL
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training import args as flags
from guided_diffusers.training.checkpointing import resolve_resume
from guided_diffusers.training.data import to_model_range
from guided_diffusers.training.losses import diffusion_loss, dropped_labels, training_draw
from guided_diffusers.training.loop import train
from guided_diffusers.training.model_card import dataset_label, training_section
from guided_diffusers.training.model_configs import build_unet, super_resolution_unet_config
from guided_diffusers.training.runtime import (
    finish_output,
    load_training_data,
    log_sample_grid,
    make_accelerator,
    prepare_training,
    report_weights_checksum,
    swapped_in_ema,
)

SUPER_RESOLUTION = [
    ("--low_resolution", dict(type=int, default=14, help="side of the low-resolution images (area-downsampled)")),
    ("--max_augmentation_level", dict(type=float, default=1.0,
                                      help="training draws the augmentation level a ~ U[0, this]; 0: no augmentation")),
    ("--augmentation_level", dict(type=float, default=DEFAULT_AUGMENTATION_LEVEL,
                                  help="the fixed level of the sample grids")),
]  # fmt: skip


def parse_args(argv=None):
    parser = flags.build_parser(__doc__.split("\n")[0], flags.DATA, flags.OPTIMISATION, flags.RUN, flags.DIFFUSION,
                                SUPER_RESOLUTION)  # fmt: skip
    args = parser.parse_args(argv)
    flags.check_common(args)
    if not 1 <= args.low_resolution < args.resolution:
        raise ValueError(f"--low_resolution must lie in [1, --resolution - 1] = [1, {args.resolution - 1}]; "
                         f"got {args.low_resolution}.")  # fmt: skip
    for flag in ("max_augmentation_level", "augmentation_level"):
        if not 0 <= getattr(args, flag) <= 1:  # NaN fails this too
            raise ValueError(f"--{flag} must lie in [0, 1]; got {getattr(args, flag)}.")
    super_resolution_unet_config(args.model_config, args.resolution, args.channels)  # bad preset or size: fail now
    args.resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    args.command = flags.recorded_command("accelerate launch", "training/train_super_resolution.py", argv)
    return args


def make_super_resolution_loss(noise_scheduler, data, args, device, unet_config):
    """compute_loss(model, indices, generator): the diffusion loss of x_t given the noise-augmented low-resolution
    image of x (area-downsampled, upsampled, noised to a ~ U[0, max level]) and a (and, --class_conditional, the
    label, dropped to the null class with probability --label_dropout)."""
    null_class = len(data.class_names) if args.class_conditional else None

    def compute_loss(model, indices, generator):
        x0, noise, timesteps = training_draw(data, indices, noise_scheduler, generator, args.random_flip)
        levels = torch.rand(len(x0), generator=generator) * args.max_augmentation_level
        augmentation_noise = torch.randn(x0.shape, generator=generator)
        labels = None if null_class is None else dropped_labels(data, indices, null_class, args.label_dropout, generator)
        condition = low_resolution_condition(area_downsample(x0, args.low_resolution), args.resolution, levels,
                                              augmentation_noise)  # fmt: skip
        x0, noise, timesteps = x0.to(device), noise.to(device), timesteps.to(device)
        x_t = noise_scheduler.add_noise(x0, noise, timesteps)
        inputs = stage_inputs(unet_config, levels.to(device), None if labels is None else labels.to(device))
        output = model(torch.cat([x_t, condition.to(device)], dim=1), timesteps, **inputs)
        return diffusion_loss(output.sample, x0, noise, x_t, timesteps, noise_scheduler, args.snr_gamma, args.vlb_weight)

    return compute_loss


def sample_grid(unet, noise_scheduler, data, args):
    """Three rows for the first images: the low-resolution input (bilinear), the super-resolved sample (DDIM, fixed
    seed, --augmentation_level) and the real image."""
    pipeline = stage_pipeline(unet, GuidedDDIMScheduler.from_config(noise_scheduler.config), data, args)
    pipeline.set_progress_bar_config(disable=True)
    real = to_model_range(data.images[: args.eval_batch_size]).to(unet.device)
    labels = data.labels[: args.eval_batch_size] if args.class_conditional else None  # told the real image's class
    low_resolution = area_downsample(real, args.low_resolution)
    steps = pipeline.iterate(low_resolution, args.augmentation_level, args.ddpm_num_inference_steps,
                             generator=torch.Generator().manual_seed(args.seed), class_labels=labels)  # fmt: skip
    final = None
    for _, _, final, _ in steps:
        pass
    rows = torch.cat([upsample(low_resolution, args.resolution), final.clamp(-1, 1), real])
    return make_grid((rows / 2 + 0.5).permute(0, 2, 3, 1).cpu().float().numpy(), rows=3, scale=2)


def stage_pipeline(unet, scheduler, data, args) -> SuperResolutionPipeline:
    """The stage as a pipeline: --class_conditional ones with the data's class names and their null class."""
    classes = dict(null_class_label=len(data.class_names), class_names=list(data.class_names)) if args.class_conditional else {}
    return SuperResolutionPipeline(unet, scheduler, args.low_resolution, **classes)


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    dataset, data = load_training_data(args)
    noise_scheduler = GuidedDDPMScheduler(num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule,
                                          prediction_type=args.prediction_type, variance_type=args.variance_type)  # fmt: skip
    torch.manual_seed(args.seed)  # the initial weights
    num_classes = len(data.class_names) if args.class_conditional else 0
    unet = build_unet(super_resolution_unet_config(args.model_config, args.resolution, args.channels,
                                                   args.variance_type == "learned_range", num_classes))  # fmt: skip
    unet, optimizer, lr_scheduler, ema, state = prepare_training(args, accelerator, unet, len(data), "train_super_resolution")

    def log_images(step):
        with swapped_in_ema(ema, unet):
            grid = sample_grid(accelerator.unwrap_model(unet), noise_scheduler, data, args)
        log_sample_grid(accelerator, args, grid, step)

    compute_loss = make_super_resolution_loss(noise_scheduler, data, args, accelerator.device,
                                              accelerator.unwrap_model(unet).config)  # fmt: skip
    state = train(accelerator, unet, optimizer, lr_scheduler, ema, compute_loss, len(data), args, state, log_images)

    accelerator.wait_for_everyone()
    report_weights_checksum(accelerator, unet)
    if accelerator.is_main_process:
        save_pipeline(accelerator.unwrap_model(unet), ema, noise_scheduler, data, args, state)
    accelerator.end_training()


def save_pipeline(unet, ema, noise_scheduler, data, args, state):
    """The output folder: a SuperResolutionPipeline with the EMA weights, a sample grid and a model card."""
    if ema is not None:
        ema.copy_to(unet.parameters())
    stage_pipeline(unet, noise_scheduler, data, args).save_pretrained(args.output_dir)
    sample_grid(unet, noise_scheduler, data, args).save(Path(args.output_dir, "samples.png"))
    name, low, high = dataset_label(args), args.low_resolution, args.resolution
    augmentation = (f"noise-conditioning augmentation at levels a ~ U[0, {args.max_augmentation_level}]"
                    if args.max_augmentation_level > 0 else "no noise-conditioning augmentation (a = 0 throughout)")  # fmt: skip
    told = ("the level a through its class embedding" if not args.class_conditional else
            f"the level a through its timestep embedding (`timestep_cond`) and the class through its class embedding "
            f"({len(data.class_names)} classes + a null class, label dropout {args.label_dropout}, so that "
            f"classifier-free guidance applies)")  # fmt: skip
    sections = {
        "Model": f"A {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M-parameter super-resolution "
        f"`{type(unet).__name__}` ({args.model_config} preset), {low}x{low} -> {high}x{high}x{args.channels}: it reads "
        f"x_t beside the area-downsampled, bilinearly upsampled and noise-augmented low-resolution image and is told "
        f"{told}; trained with {augmentation}, predicting `{args.prediction_type}` on a "
        f"{args.ddpm_num_steps}-step `{args.ddpm_beta_schedule}` schedule.",
        "Usage": "```python\nfrom guided_diffusers.pipelines import SuperResolutionPipeline\n"
        "pipe = SuperResolutionPipeline.from_pretrained(\"path/or/repo_id\")\n"
        f"images = pipe(low_resolution_images, augmentation_level={args.augmentation_level}, num_inference_steps=50"
        f"{', class_labels=labels, guidance_scale=3' if args.class_conditional else ''}).images"
        "\n```\n\n`low_resolution_images`: PIL images, or arrays / tensors in [0, 1], "
        f"{low}x{low} with {args.channels} channel(s).",
        "Training": training_section(args, state, len(data)),
        "Samples": f"Rows: the low-resolution input (bilinear), DDIM {args.ddpm_num_inference_steps} steps at "
        f"augmentation level {args.augmentation_level}, the real image:\n\n![samples](samples.png)",
    }
    finish_output(args, title=f"guided-diffusers {name} super-resolution {low} -> {high}", sections=sections,
                  pipeline_tag="image-to-image", tags=["diffusers", "super-resolution", "cascaded-diffusion"],
                  datasets=[name])  # fmt: skip


if __name__ == "__main__":
    main()
