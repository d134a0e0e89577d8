"""Sample MNIST digits with our DDPM and DDIM schedulers from the exact denoiser of the MNIST test set.

The exact (empirical) denoiser is what a perfectly trained network would compute for these 10,000 images, so no
weights are needed; every sample should land on one of the images, which this script measures. Writes a grid PNG.

    python examples/sample_exact_denoiser.py --num_inference_steps 50 --output outputs/exact_denoiser.png
"""

import argparse
import time
from pathlib import Path

import torch

from guided_diffusers.models import EmpiricalDenoiser
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_name", default="mnist")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--per_class", type=int, default=2, help="samples per class and sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="outputs/exact_denoiser.png")
    return parser.parse_args()


def sample(model, scheduler, class_labels, num_inference_steps, generator, **step_kwargs):
    """The plain sampling loop: x_T ~ N(0, I), then one model call and one scheduler step per timestep."""
    scheduler.set_timesteps(num_inference_steps)
    x = torch.randn((len(class_labels), 1, 28, 28), generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = model(x, t, class_labels=class_labels).sample
        x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    return x


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    data = to_tensors(load_image_dataset(args.dataset_name, split="test"), resolution=28, channels=1)
    images = to_model_range(data.images)
    samplers = {
        f"DDIM-{args.num_inference_steps} (eta 0)": (GuidedDDIMScheduler(clip_sample=False), {}),
        f"DDPM-{args.num_inference_steps}": (GuidedDDPMScheduler(), {}),
    }
    class_labels = torch.arange(10).repeat_interleave(args.per_class)
    rows = []
    print(f"exact denoiser of {len(images)} {args.dataset_name} test images; {len(class_labels)} samples each")
    print(f"{'sampler':<22} {'seconds':>8} {'mean NN distance':>17} {'class of NN = label':>20}")
    for name, (scheduler, step_kwargs) in samplers.items():
        model = EmpiricalDenoiser(images, scheduler.alphas_cumprod, data.labels)
        start = time.perf_counter()
        x = sample(model, scheduler, class_labels, args.num_inference_steps, torch.Generator().manual_seed(args.seed))
        seconds = time.perf_counter() - start
        distances = torch.cdist(x.reshape(len(x), -1), images.reshape(len(images), -1))
        nearest_distance, nearest = distances.min(dim=1)
        agreement = (data.labels[nearest] == class_labels).float().mean().item()
        print(f"{name:<22} {seconds:>8.2f} {nearest_distance.mean().item():>17.4f} {agreement:>20.0%}")
        rows.append(x)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    images = GuidedDiffusionPipeline.postprocess(torch.cat(rows), output_type="np")
    make_grid(images, rows=len(rows), scale=3).save(args.output)
    print(f"grid (one row per sampler) written to {args.output}")


if __name__ == "__main__":
    main()
