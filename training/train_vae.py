"""Train the autoencoder of latent diffusion (Rombach 2022): a diffusers `AutoencoderKL` on real data, with
accelerate, reconstruction + KL loss.

    accelerate launch training/train_vae.py --dataset_name mnist --resolution 32 --vae_config small \
        --output_dir runs/mnist-vae

loss = mean (x - D(z))^2 + kl_weight * KL(q(z | x) || N(0, I)) per latent element, z ~ q(z | x) (the
reparameterised posterior sample). A small KL weight keeps the latent close to deterministic, as Stable Diffusion
does, and lets its scale drift; so after training the latent's standard deviation s is measured on training images
and `scaling_factor` = 1 / s is stored in the config: diffusion then runs on z * scaling_factor, which has unit
variance like the noise it is mixed with. The output folder is an `AutoencoderKL` (safetensors) with a model card
giving the held-out reconstruction error.
"""

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.training import args as flags
from guided_diffusers.training.checkpointing import resolve_resume
from guided_diffusers.training.data import to_model_range
from guided_diffusers.training.loop import train
from guided_diffusers.training.model_card import dataset_label, training_section
from guided_diffusers.training.model_configs import vae_config
from guided_diffusers.training.runtime import finish_output, load_training_data, make_accelerator, prepare_training

VAE = [
    ("--vae_config", dict(default="small", help="an AutoencoderKL preset: tiny or small")),
    ("--kl_weight", dict(type=float, default=1e-4, help="weight of the KL term per latent element")),
    ("--eval_split", dict(default="test")),
    ("--eval_max_samples", dict(type=int, default=2000)),
    ("--scaling_samples", dict(type=int, default=2000, help="training images to measure the latent scale on")),
    ("--eval_batch_size", dict(type=int, default=100)),
]


def parse_args(argv=None):
    parser = flags.build_parser(__doc__.split("\n")[0], flags.DATA, flags.OPTIMISATION, flags.RUN, VAE)
    args = parser.parse_args(argv)
    flags.check_common(args)
    vae_config(args.vae_config, args.resolution, args.channels)  # bad preset or resolution: fail now
    if args.kl_weight < 0:
        raise ValueError(f"--kl_weight must be >= 0; got {args.kl_weight}.")
    args.resume_path = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    args.command = flags.recorded_command("accelerate launch", "training/train_vae.py", argv)
    return args


class VAELoss(torch.nn.Module):
    """The autoencoder with its loss as `forward`, so that a DistributedDataParallel wrapper sees every call."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float):
        super().__init__()
        self.vae, self.kl_weight, self.config = vae, kl_weight, vae.config

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        posterior = self.vae.encode(x).latent_dist
        reconstruction = self.vae.decode(posterior.sample(generator=generator)).sample
        latent_elements = posterior.mean[0].numel()
        kl = posterior.kl().mean() / latent_elements  # KL summed over the latent, per element
        return torch.nn.functional.mse_loss(reconstruction, x) + self.kl_weight * kl


@torch.no_grad()
def measure(vae: AutoencoderKL, images_uint8: torch.Tensor, batch_size: int) -> dict:
    """Held-out reconstruction MSE (images in [-1, 1]) through the posterior mean, and the latent's std."""
    errors, latents = [], []
    for batch in images_uint8.split(batch_size):
        x = to_model_range(batch)
        z = vae.encode(x).latent_dist.mean
        errors.append((vae.decode(z).sample - x).pow(2).flatten(1).mean(1))
        latents.append(z.flatten())
    errors, latents = torch.cat(errors), torch.cat(latents)
    return {"mse": errors.mean().item(), "mse_max": errors.max().item(), "latent_std": latents.std().item()}


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    dataset, data = load_training_data(args)
    torch.manual_seed(args.seed)  # the initial weights
    vae = AutoencoderKL(**vae_config(args.vae_config, args.resolution, args.channels))
    model, optimizer, lr_scheduler, ema, state = prepare_training(args, accelerator, VAELoss(vae, args.kl_weight),
                                                                  len(data), "train_vae")  # fmt: skip

    def compute_loss(model, indices, generator):
        return model(to_model_range(data.images[indices], args.random_flip, generator).to(accelerator.device), generator)

    state = train(accelerator, model, optimizer, lr_scheduler, ema, compute_loss, len(data), args, state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        if ema is not None:
            ema.copy_to(trained.parameters())
        save_vae(trained.vae.eval(), data, dataset, args, state)
    accelerator.end_training()


def save_vae(vae: AutoencoderKL, data, dataset, args, state) -> None:
    """Measure the latent scale and the held-out error, then write the folder and its model card."""
    chosen = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))[: args.scaling_samples]
    scale = 1 / measure(vae, data.images[chosen], args.eval_batch_size)["latent_std"]
    vae.register_to_config(scaling_factor=scale)
    _, held_out = load_training_data(args, split=args.eval_split, max_samples=args.eval_max_samples)
    result = {**measure(vae, held_out.images, args.eval_batch_size), "scaling_factor": scale,
              "split": args.eval_split, "num_images": len(held_out)}  # fmt: skip
    vae.save_pretrained(args.output_dir)
    Path(args.output_dir, "reconstruction.json").write_text(json.dumps(result, indent=2))
    with torch.no_grad():
        x = to_model_range(held_out.images[:10])
        rebuilt = vae.decode(vae.encode(x).latent_dist.mean).sample
    pairs = torch.cat([x, rebuilt]).clamp(-1, 1).permute(0, 2, 3, 1).numpy() / 2 + 0.5
    make_grid(np.asarray(pairs), rows=2, scale=2).save(Path(args.output_dir, "reconstructions.png"))
    latent = vae.config.latent_channels, *(s // 2 ** (len(vae.config.block_out_channels) - 1) for s in (args.resolution,) * 2)
    sections = {
        "Model": f"A {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M-parameter `AutoencoderKL` "
        f"({args.vae_config} preset): {args.channels}x{args.resolution}x{args.resolution} images <-> "
        f"{latent[0]}x{latent[1]}x{latent[2]} latents, `scaling_factor` {scale:.4f} (1 / the latent std on "
        f"{len(chosen)} training images), for latent diffusion.",
        "Reconstruction": f"Held-out `{args.eval_split}` split, {len(held_out)} images, through the posterior mean: "
        f"MSE {result['mse']:.2e} (images in [-1, 1]), worst image {result['mse_max']:.2e}. Top row originals, "
        "bottom row reconstructions:\n\n![reconstructions](reconstructions.png)",
        "Training": training_section(args, state, len(data)) + f"\n- loss: MSE + {args.kl_weight} x KL per latent element",
    }  # fmt: skip
    finish_output(args, title=f"guided-diffusers {dataset_label(args)} autoencoder", tags=["vae", "autoencoder-kl"],
                  sections=sections, datasets=[dataset_label(args)])  # fmt: skip


if __name__ == "__main__":
    main()
