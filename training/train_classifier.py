"""Train the noise-aware classifier p(y | x_t, t) for classifier guidance, with accelerate.

    accelerate launch training/train_classifier.py --dataset_name mnist --noise_scheduler runs/mnist \
        --output_dir runs/mnist-classifier

x_t = q_sample(x0, t) with t uniform over the diffusion's timesteps and its exact noise schedule, read from
--noise_scheduler (a pipeline folder or a scheduler folder) or built from --ddpm_num_steps/--ddpm_beta_schedule.
Reports held-out accuracy per timestep bucket, saves the classifier (safetensors) with a model card.
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.training import args as flags
from guided_diffusers.training.checkpointing import resolve_resume
from guided_diffusers.training.data import to_model_range
from guided_diffusers.training.losses import training_draw
from guided_diffusers.training.latents import encode_images, load_vae
from guided_diffusers.training.loop import train
from guided_diffusers.training.model_card import dataset_label, training_section
from guided_diffusers.training.model_configs import classifier_config
from guided_diffusers.training.runtime import (
    finish_output,
    load_noise_scheduler,
    load_training_data,
    make_accelerator,
    prepare_training,
    swapped_in_ema,
)

CLASSIFIER = [
    ("--model_config", dict(default="small", help="a classifier preset (tiny, small) or a JSON config file")),
    ("--pooling", dict(default="attention", choices=["attention", "mean"])),
    ("--eval_split", dict(default="test", help="held-out split for the accuracy per timestep bucket")),
    ("--eval_max_samples", dict(type=int, default=2000)),
    ("--num_timestep_buckets", dict(type=int, default=10)),
    ("--noise_free", dict(action="store_true", help="train on clean images only (t = 0): the evaluation classifier "
                                                    "whose features and accuracy judge samples")),  # fmt: skip
]


def parse_args(argv=None):
    parser = flags.build_parser(__doc__.split("\n")[1], flags.DATA, flags.OPTIMISATION, flags.RUN, CLASSIFIER,
                                flags.NOISE_SCHEDULE, flags.LATENT)  # fmt: skip
    parser.set_defaults(learning_rate=3e-4)
    args = parser.parse_args(argv)
    flags.check_common(args)
    flags.check_latent(args)
    if args.num_timestep_buckets < 1:
        raise ValueError(f"--num_timestep_buckets must be a positive integer; got {args.num_timestep_buckets}.")
    classifier_config(args.model_config, args.diffused_size, args.diffused_channels)  # bad preset or size: fail now
    args.noise = load_noise_scheduler(args)
    args.resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    args.command = flags.recorded_command("accelerate launch", "training/train_classifier.py", argv)
    return args


def make_loss(noise_scheduler, data, args, device, latents=None):
    """Cross-entropy of the class of x0 from x_t, t ~ U{0, ..., T-1} (ADM, sec. 4); with --noise_free from x0.
    With `latents` (a LatentCache), x0 is the scaled latent of the images (a latent-space classifier)."""

    def compute_loss(model, indices, generator):
        x0, noise, timesteps = training_draw(data, indices, noise_scheduler, generator, args.random_flip, latents)
        if args.noise_free:
            timesteps.zero_()
            noise.zero_()
        x_t = noise_scheduler.add_noise(x0, noise, timesteps).to(device)
        logits = model(x_t, timesteps.to(device)).logits
        return F.cross_entropy(logits, data.labels[indices].to(device))

    return compute_loss


@torch.no_grad()
def accuracy_by_timestep(model, noise_scheduler, x0_all, labels, buckets: int, device, batch_size=500, noise_free=False):
    """Held-out accuracy on `x0_all` (images in [-1, 1], or scaled latents) with t drawn uniformly inside each of
    `buckets` equal ranges of timesteps (on x0 itself at t = 0 when `noise_free`)."""
    T = noise_scheduler.config.num_train_timesteps
    generator = torch.Generator().manual_seed(1234)
    rows = []
    for bucket in range(buckets):
        low, high = bucket * T // buckets, (bucket + 1) * T // buckets
        correct = 0
        for start in range(0, len(x0_all), batch_size):
            x0 = x0_all[start : start + batch_size]
            t = torch.randint(low, high, (len(x0),), generator=generator)
            x_t = noise_scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
            if noise_free:
                x_t, t = x0, torch.zeros_like(t)
            predicted = model(x_t.to(device), t.to(device)).logits.argmax(1).cpu()
            correct += (predicted == labels[start : start + batch_size]).sum().item()
        rows.append({"timesteps": [0, 0] if noise_free else [low, high], "accuracy": correct / len(x0_all)})
    return rows


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    _, data = load_training_data(args)
    _, held_out = load_training_data(args, split=args.eval_split, max_samples=args.eval_max_samples)
    if data.labels is None:
        raise ValueError("A classifier needs a label column (a ClassLabel feature, or --label_column).")
    noise_scheduler = args.noise
    vae = None if args.vae is None else load_vae(args.vae)
    latents = None if vae is None else encode_images(vae, data.images)  # once, before training
    if vae is None:
        held_out_x0 = to_model_range(held_out.images)
    else:
        encoded = encode_images(vae, held_out.images)
        held_out_x0 = encoded.mean * encoded.scaling_factor
    torch.manual_seed(args.seed)
    model = NoiseAwareClassifier(**classifier_config(args.model_config, args.diffused_size, args.diffused_channels,
                                                     len(data.class_names), args.pooling,
                                                     schedule_of(noise_scheduler.config)))  # fmt: skip
    model, optimizer, lr_scheduler, ema, state = prepare_training(args, accelerator, model, len(data), "train_classifier")
    compute_loss = make_loss(noise_scheduler, data, args, accelerator.device, latents)
    state = train(accelerator, model, optimizer, lr_scheduler, ema, compute_loss, len(data), args, state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        classifier = accelerator.unwrap_model(model).eval()
        with swapped_in_ema(ema, classifier):
            buckets = 1 if args.noise_free else args.num_timestep_buckets
            rows = accuracy_by_timestep(classifier, noise_scheduler, held_out_x0, held_out.labels, buckets,
                                        accelerator.device, noise_free=args.noise_free)  # fmt: skip
            classifier.save_pretrained(args.output_dir)
        save_report(args, rows, state, data, held_out, classifier)
    accelerator.end_training()


def save_report(args, rows, state, data, held_out, classifier):
    """Accuracy per timestep bucket as JSON, printed, and in the model card."""
    Path(args.output_dir, "accuracy_by_timestep.json").write_text(json.dumps(rows, indent=2))
    def span(row):
        low, high = row["timesteps"]
        return "clean (t = 0)" if low == high == 0 else f"[{low}, {high})"

    table = "| timesteps | held-out accuracy |\n| --- | --- |\n" + "\n".join(
        f"| {span(row)} | {row['accuracy']:.1%} |" for row in rows
    )
    print(table)
    name = dataset_label(args)
    schedule = classifier.config.noise_schedule
    size = f"A {sum(p.numel() for p in classifier.parameters()) / 1e6:.2f}M-parameter `NoiseAwareClassifier`"
    if args.noise_free:
        role = (f"{size} ({args.model_config} preset, {args.pooling} pooling) trained on clean images only (t = 0): "
                f"an evaluation classifier whose pooled features and accuracy judge samples (training/evaluate.py), "
                f"or the clean classifier of universal guidance (training/add_clean_classifier.py); never both for "
                f"the same samples, as a classifier would grade its own guidance.")  # fmt: skip
    else:
        role = (f"{size} ({args.model_config} preset, {args.pooling} pooling) for classifier guidance: p(y | x_t, t) "
                f"over {len(data.class_names)} classes, on the `{schedule['beta_schedule']}` schedule with "
                f"{schedule['num_train_timesteps']} steps.")  # fmt: skip
    if args.vae is not None:
        role += (f" It reads the {args.diffused_channels}x{args.diffused_size}x{args.diffused_size} scaled latents of "
                 f"the autoencoder `{args.vae}` (latent diffusion), not pixels.")  # fmt: skip
    sections = {
        "Model": role,
        "Usage": "```python\nfrom guided_diffusers.models import NoiseAwareClassifier\n"
        "classifier = NoiseAwareClassifier.from_pretrained(\"path/or/repo_id\")\n```",
        "Training": training_section(args, state, len(data)),
        "Held-out accuracy by timestep": f"On {len(held_out)} images of split `{args.eval_split}`"
        + (":" if args.noise_free else ", t uniform in each range:") + f"\n\n{table}",
    }
    kind = "clean-image classifier" if args.noise_free else "noise-aware classifier"
    tags = ["clean-classifier"] if args.noise_free else ["noise-aware-classifier", "classifier-guidance"]
    finish_output(args, title=f"guided-diffusers {name} {kind}", tags=tags, sections=sections,
                  pipeline_tag="image-classification", datasets=[name])  # fmt: skip


if __name__ == "__main__":
    main()
