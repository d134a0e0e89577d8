"""Cost of pixel-space against latent diffusion (Rombach 2022) on the same data size, side by side in one run:
training images per second (forward, backward and AdamW step of the UNet on a batch; latents come from the cache,
so the frozen encoder costs nothing per step) and sampling seconds per image (DDIM, then the VAE decoder for the
latent model). Same UNet preset for both; the latent UNet sees 4x8x8 instead of 1x32x32.

    python benchmarks/pixel_vs_latent.py --batch_size 64 --steps 5 --sampling_steps 50 --repeats 3
"""

import argparse

import torch
from common import best_of_interleaved, machine_line, repeated, unet_training_step
from diffusers import AutoencoderKL

from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.model_configs import build_unet, unet_config, vae_config


def models(model_config: str):
    torch.manual_seed(0)
    vae = AutoencoderKL(**vae_config("small", 32, 1)).eval()
    pixel = build_unet(unet_config(model_config, 32, 1, num_classes=10))
    latent = build_unet(unet_config(model_config, 8, vae.config.latent_channels, num_classes=10))
    return vae, {"pixel (1x32x32)": (pixel, None), "latent (4x8x8)": (latent, vae)}


def training_step(unet, batch: int):
    config = unet.config
    x = torch.randn(batch, config.in_channels, config.sample_size, config.sample_size)
    return unet_training_step(unet, x, class_labels=torch.randint(0, 10, (batch,)))


def sampling_run(unet, vae, batch: int, steps: int):
    pipe = GuidedDiffusionPipeline(unet.eval(), GuidedDDIMScheduler(clip_sample=False), null_class_label=None, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(batch) % 10
    return lambda: pipe(batch_size=batch, class_labels=labels, num_inference_steps=steps, output_type="pt")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_config", default="small")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing")
    parser.add_argument("--sampling_steps", type=int, default=50)
    parser.add_argument("--sampling_batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    vae, kinds = models(args.model_config)
    print(machine_line())
    print(f"{args.model_config} UNets, class-conditional; small AutoencoderKL ({sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M); "
          f"best of {args.repeats} interleaved repeats")  # fmt: skip

    train = best_of_interleaved({name: repeated(training_step(unet, args.batch_size), args.steps)
                                 for name, (unet, _) in kinds.items()}, args.repeats)  # fmt: skip
    sample = best_of_interleaved({name: sampling_run(unet, vae_or_none, args.sampling_batch, args.sampling_steps)
                      for name, (unet, vae_or_none) in kinds.items()}, args.repeats)  # fmt: skip
    pixel_name = next(iter(kinds))
    print("\n| model | UNet params (M) | training images/s | sampling s/image | training speed-up | sampling speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (unet, _) in kinds.items():
        images_per_s = args.steps * args.batch_size / train[name]
        per_image = sample[name] / args.sampling_batch
        print(f"| {name} | {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} | {images_per_s:.1f} | {per_image:.4f} | "
              f"{train[pixel_name] / train[name]:.2f}x | {sample[pixel_name] / sample[name]:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
