"""Training throughput: our training loop (training/loop.py + train_unet's loss) against a plain hand-written
PyTorch loop on the same model, batch and data, measured alternately in one process. Prints images/s and the ratio.

    python benchmarks/train_throughput.py --model_config small --batch_size 64 --steps 20 --repeats 3

Checkpointing and sample grids are left out of both (their cost is set by --checkpointing_steps and
--save_images_steps); the loss is read back every --logging_steps, as in real runs.
"""

import argparse
import tempfile
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from common import machine_line, median
from diffusers.optimization import get_scheduler

from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.data import load_image_dataset, to_tensors
from guided_diffusers.training.loop import LoopState, train
from guided_diffusers.training.model_configs import build_unet, unet_config
from guided_diffusers.training.runtime import make_accelerator
from guided_diffusers.training.losses import make_loss


def plain_loop(unet, optimizer, data, noise_scheduler, batch_size, steps, null_class):
    """The baseline anyone would write: random batch, noise, MSE to eps, backward, step."""
    for _ in range(steps):
        indices = torch.randint(0, len(data), (batch_size,))
        x0 = data.images[indices].float() / 127.5 - 1
        labels = torch.where(torch.rand(batch_size) < 0.1, null_class, data.labels[indices])
        noise = torch.randn_like(x0)
        timesteps = torch.randint(0, 1000, (batch_size,))
        x_t = noise_scheduler.add_noise(x0, noise, timesteps)
        loss = F.mse_loss(unet(x_t, timesteps, class_labels=labels).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def our_loop(unet, optimizer, data, noise_scheduler, batch_size, steps, output_dir):
    args = SimpleNamespace(
        gradient_accumulation_steps=1, mixed_precision="no", logger="none", output_dir=output_dir, logging_dir="logs",
        train_batch_size=batch_size, seed=0, max_train_steps=steps, max_grad_norm=1.0, logging_steps=20,
        checkpointing_steps=10**9, checkpoints_total_limit=1, save_images_steps=10**9, random_flip=False,
        class_conditional=True, label_dropout=0.1, snr_gamma=None, vlb_weight=0.001,
    )  # fmt: skip
    accelerator = make_accelerator(args)
    model, optimizer = accelerator.prepare(unet, optimizer)
    lr_scheduler = get_scheduler("constant", optimizer)
    loss = make_loss(noise_scheduler, data, args, accelerator.device)
    train(accelerator, model, optimizer, lr_scheduler, None, loss, len(data), args, LoopState())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_config", default="small")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = to_tensors(load_image_dataset("mnist", max_samples=10_000), 28, 1)
    noise_scheduler = GuidedDDPMScheduler()
    torch.manual_seed(0)
    unet = build_unet(unet_config(args.model_config, 28, 1, num_classes=10))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    plain_loop(unet, optimizer, data, noise_scheduler, args.batch_size, 3, 10)  # warm-up
    timings = {"plain PyTorch loop": [], "our training loop": []}
    with tempfile.TemporaryDirectory() as output_dir:
        for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
            start = time.perf_counter()
            plain_loop(unet, optimizer, data, noise_scheduler, args.batch_size, args.steps, 10)
            timings["plain PyTorch loop"].append(time.perf_counter() - start)
            start = time.perf_counter()
            our_loop(unet, optimizer, data, noise_scheduler, args.batch_size, args.steps, output_dir)
            timings["our training loop"].append(time.perf_counter() - start)
    print(machine_line())
    print(f"model {args.model_config} ({sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M), batch "
          f"{args.batch_size}, {args.steps} steps x {args.repeats} alternating repeats; medians")  # fmt: skip
    print(f"{'loop':<22} {'s/step':>8} {'images/s':>9}")
    rates = {}
    for name, seconds in timings.items():
        per_step = median(seconds) / args.steps
        rates[name] = args.batch_size / per_step
        print(f"{name:<22} {per_step:>8.3f} {rates[name]:>9.1f}")
    print(f"ratio ours / plain (images/s): {rates['our training loop'] / rates['plain PyTorch loop']:.3f}")


if __name__ == "__main__":
    main()
