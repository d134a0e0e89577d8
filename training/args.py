"""Command-line flags as data, shared by the training scripts. Names follow diffusers'
examples/unconditional_image_generation/train_unconditional.py wherever it has the same option."""

import argparse

DATA = [
    ("--dataset_name", dict(default=None, help="built-in (mnist, fashion_mnist) or a Hugging Face Hub dataset id")),
    ("--train_data_dir", dict(default=None, help="a local image folder (one subfolder per class)")),
    ("--dataset_split", dict(default="train")),
    ("--max_train_samples", dict(type=int, default=None, help="use only the first N images")),
    ("--image_column", dict(default=None, help="default: the first Image feature")),
    ("--label_column", dict(default=None, help="default: the first ClassLabel feature")),
    ("--resolution", dict(type=int, default=28)),
    ("--channels", dict(type=int, default=1, choices=[1, 3], help="1: grayscale, 3: RGB")),
    ("--resize_filter", dict(default="bicubic", choices=["bicubic", "area"],
                             help="how images larger than --resolution are shrunk; area: block means, the "
                                  "low-resolution data of a cascade's base model")),
    ("--random_flip", dict(action="store_true", help="flip half the images horizontally (not for digits)")),
    ("--cache_dir", dict(default=None)),
]

OPTIMISATION = [
    ("--train_batch_size", dict(type=int, default=64, help="per process")),
    ("--max_train_steps", dict(type=int, default=None, help="optimizer steps; overrides --num_epochs")),
    ("--num_epochs", dict(type=int, default=1)),
    ("--gradient_accumulation_steps", dict(type=int, default=1)),
    ("--learning_rate", dict(type=float, default=1e-3)),
    ("--lr_scheduler", dict(default="cosine", choices=["constant", "constant_with_warmup", "cosine", "linear"])),
    ("--lr_warmup_steps", dict(type=int, default=200)),
    ("--adam_beta1", dict(type=float, default=0.9)),
    ("--adam_beta2", dict(type=float, default=0.999)),
    ("--adam_weight_decay", dict(type=float, default=0.0)),
    ("--adam_epsilon", dict(type=float, default=1e-8)),
    ("--max_grad_norm", dict(type=float, default=1.0, help="0 disables gradient clipping")),
    ("--mixed_precision", dict(default="no", choices=["no", "fp16", "bf16"])),
    ("--use_ema", dict(action="store_true")),
    ("--ema_max_decay", dict(type=float, default=0.9999)),
    ("--ema_inv_gamma", dict(type=float, default=1.0)),
    ("--ema_power", dict(type=float, default=3 / 4)),
    ("--seed", dict(type=int, default=0)),
]

RUN = [
    ("--output_dir", dict(required=True)),
    ("--checkpointing_steps", dict(type=int, default=500)),
    ("--checkpoints_total_limit", dict(type=int, default=3)),
    ("--resume_from_checkpoint", dict(default=None, help="a checkpoint folder, or 'latest' in --output_dir")),
    ("--overwrite_output_dir", dict(action="store_true",
                                    help="start a fresh run in a folder that holds another run's checkpoints "
                                         "(they are removed)")),
    ("--logger", dict(default="tensorboard", choices=["tensorboard", "none"])),
    ("--logging_dir", dict(default="logs", help="under --output_dir")),
    ("--logging_steps", dict(type=int, default=20, help="how often the loss is read back and logged")),
    ("--save_images_steps", dict(type=int, default=1000)),
    ("--push_to_hub", dict(action="store_true")),
    ("--hub_model_id", dict(default=None)),
    ("--hub_token", dict(default=None, help="prefer `hf auth login` or the HF_TOKEN variable, which huggingface_hub "
                                           "reads itself; a token given here is used for the upload and never "
                                           "written to any file (model card, logs, hparams)")),
]

SECRET_FLAGS = ("--hub_token",)  # values never recorded: redacted in commands, left out of logged hyperparameters
REDACTED = "REDACTED"  # no shell metacharacters: the recorded command stays unquoted

DIFFUSION = [
    ("--model_config", dict(default="small", help="a preset (tiny, small, shallow, narrow, base) or a UNet2DModel JSON file")),
    ("--class_conditional", dict(action="store_true", help="condition on the label column, with a null class")),
    ("--label_dropout", dict(type=float, default=0.1, help="share of labels replaced by the null class (CFG)")),
    ("--prediction_type", dict(default="epsilon", choices=["epsilon", "sample", "v_prediction"])),
    ("--variance_type", dict(default="fixed_small", choices=["fixed_small", "learned_range"],
                             help="learned_range: learn Sigma with the improved-DDPM hybrid loss")),  # fmt: skip
    ("--vlb_weight", dict(type=float, default=0.001, help="lambda of the hybrid loss (improved DDPM, sec. 3.1)")),
    ("--snr_gamma", dict(type=float, default=None, help="min-SNR-gamma loss weighting (Hang 2023); 5 is usual")),
    ("--ddpm_num_steps", dict(type=int, default=1000)),
    ("--ddpm_beta_schedule", dict(default="linear", choices=["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])),
    ("--ddpm_num_inference_steps", dict(type=int, default=50, help="DDIM steps for the sample grids")),
    ("--eval_batch_size", dict(type=int, default=20)),
]


# the noise schedule a model of noisy images (classifier, CLIP) is trained on: the diffusion model's, read from its folder
NOISE_SCHEDULE = [
    ("--noise_scheduler", dict(default=None, help="pipeline or scheduler folder whose noise schedule to train on")),
    ("--ddpm_num_steps", dict(type=int, default=1000)),
    ("--ddpm_beta_schedule", dict(default="linear", choices=["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])),
]

LATENT = [("--vae", dict(default=None, help="an AutoencoderKL folder (train_vae.py): work on its latents"))]


def redacted(argv: list[str]) -> list[str]:
    """Command-line arguments with the values of SECRET_FLAGS replaced, in both `--flag value` and `--flag=value`."""
    out, hide_next = [], False
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if hide_next:
            out.append(REDACTED)
        elif flag in SECRET_FLAGS and "=" in arg:
            out.append(f"{flag}={REDACTED}")
        else:
            out.append(arg)
        hide_next = not hide_next and arg in SECRET_FLAGS
    return out


def recorded_command(launcher: str, script: str, argv=None) -> str:
    """The command as model cards and results record it: the launcher, the script and its arguments, secrets
    redacted."""
    import shlex
    import sys

    return f"{launcher} {script} " + shlex.join(redacted(list(sys.argv[1:] if argv is None else argv)))


def recordable(args) -> dict:
    """The flags as they may be written down (results.json, TensorBoard hparams): without secrets."""
    return {key: value for key, value in vars(args).items() if f"--{key}" not in SECRET_FLAGS}


def build_parser(description: str, *groups) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    for group in groups:
        for flag, options in group:
            parser.add_argument(flag, **options)
    return parser


def check_common(args) -> None:
    """Fail before any training starts, naming the flag."""
    if (args.dataset_name is None) == (args.train_data_dir is None):
        raise ValueError("Pass exactly one of --dataset_name and --train_data_dir.")
    for flag in ("train_batch_size", "gradient_accumulation_steps", "resolution", "checkpointing_steps",
                 "logging_steps", "save_images_steps", "num_epochs"):  # fmt: skip
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be a positive integer; got {getattr(args, flag)}.")
    samples = 1 if args.max_train_samples is None else args.max_train_samples
    for flag, value in {"eval_batch_size": getattr(args, "eval_batch_size", 1), "max_train_samples": samples}.items():
        if value < 1:
            raise ValueError(f"--{flag} must be a positive integer; got {value}.")
    if args.lr_warmup_steps < 0:
        raise ValueError(f"--lr_warmup_steps must be 0 or more; got {args.lr_warmup_steps}.")
    if not 0 < args.learning_rate < float("inf"):
        raise ValueError(f"--learning_rate must be a positive number; got {args.learning_rate}.")
    if not 0 < args.ema_max_decay <= 1:
        raise ValueError(f"--ema_max_decay must lie in (0, 1]; got {args.ema_max_decay}.")
    snr_gamma = getattr(args, "snr_gamma", None)
    if snr_gamma is not None and not 0 < snr_gamma < float("inf"):  # a negative weight would train on -loss
        raise ValueError(f"--snr_gamma must be a positive number (5 is usual); got {snr_gamma}.")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise ValueError(f"--max_train_steps must be a positive integer; got {args.max_train_steps}.")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be a positive integer; got {args.checkpoints_total_limit}.")
    if not 0 <= getattr(args, "label_dropout", 0) < 1:
        raise ValueError(f"--label_dropout must lie in [0, 1); got {args.label_dropout}.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id.")


def check_latent(args) -> None:
    """Set args.diffused_channels / args.diffused_size: the images', or with --vae its latents'."""
    from pathlib import Path

    from diffusers import AutoencoderKL

    from .latents import latent_size

    args.diffused_channels, args.diffused_size = args.channels, args.resolution
    if args.vae is None:
        return
    if args.random_flip:
        raise ValueError("--random_flip cannot be used with --vae: latents are encoded once, unflipped.")
    if not (Path(args.vae) / "config.json").is_file():
        raise ValueError(f"--vae {args.vae!r} is not an AutoencoderKL folder (no config.json).")
    args.diffused_channels, args.diffused_size = latent_size(AutoencoderKL.load_config(args.vae), args.resolution)


def check_captioned(args) -> None:
    """For the captioned compositions (training/captions.py): a dataset with a caption vocabulary, 1 x 28 x 28 items,
    a --max_length of at least 4 tokens; sets args.border (with --vae the 28 x 56 canvas gets a 2-pixel black border,
    32 x 64, so that the VAE's factor 4 divides it) and args.diffused_shape, the (height, width) of 28 x 56
    compositions or of their latents."""
    from .captions import CLASS_WORDS

    if args.dataset_name not in CLASS_WORDS:
        raise ValueError(f"--dataset_name must be one of {', '.join(CLASS_WORDS)} (the datasets with caption "
                         f"vocabularies); got {args.dataset_name!r}.")  # fmt: skip
    if args.max_length < 4:
        raise ValueError(f"--max_length must be at least 4 tokens; got {args.max_length}.")
    if getattr(args, "canvas", "pair") == "item":
        check_item_canvas(args)
        return
    if args.resolution != 28 or args.channels != 1:
        raise ValueError("Captioned compositions are 1 x 28 x 56 (two 28 x 28 items): keep --resolution 28 --channels 1 "
                         "(--canvas item trains on one item alone, at --resolution 28 or smaller).")  # fmt: skip
    args.border = 0 if args.vae is None else 2
    args.resolution = 28 + 2 * args.border  # for the latent size; the composition is 28 x 56 inside
    check_latent(args)
    args.resolution = 28
    args.diffused_shape = (args.diffused_size, 2 * args.diffused_size) if args.vae else (28, 56)


def check_item_canvas(args) -> None:
    """--canvas item: one captioned item alone, 1 x r x r with r = --resolution <= 28 (shrunk by --resize_filter; a
    cascade's text base is 14 x 14 with `area`), in pixel space, no pairs."""
    if args.channels != 1 or not 1 <= args.resolution <= 28:
        raise ValueError(f"--canvas item trains on one 1 x 28 x 28 item, kept or shrunk: --channels 1 and --resolution "
                         f"at most 28; got --channels {args.channels} --resolution {args.resolution}.")  # fmt: skip
    if args.vae is not None or args.pair_fraction != 0:
        raise ValueError(f"--canvas item is one item in pixel space: leave out --vae and set --pair_fraction 0; got "
                         f"--vae {args.vae!r} --pair_fraction {args.pair_fraction}.")  # fmt: skip
    args.border = 0
    check_latent(args)
    args.diffused_shape = (args.resolution, args.resolution)
