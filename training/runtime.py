"""Setting up accelerate the same way for every training script."""

import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration


def make_accelerator(args) -> Accelerator:
    """An Accelerator from the shared flags. Several processes on a machine with no GPU need `cpu=True`, or
    accelerate would start independent single processes instead of one gloo group."""
    several_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1
    has_device = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return Accelerator(
        cpu=several_processes and not has_device,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=str(Path(args.output_dir, args.logging_dir))
        ),
    )
