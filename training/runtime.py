"""Setting up a training run the same way in every script: accelerate, data, optimizer, LR schedule, EMA, resume."""

import os
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from ..schedulers import GuidedDDPMScheduler
from .args import recordable
from .checkpointing import load_checkpoint
from .run_folder import claim_output_dir
from .data import load_image_dataset, to_tensors
from .loop import LoopState
from .model_card import write_model_card


def make_accelerator(args) -> Accelerator:
    """An Accelerator from the shared flags, once the output folder is claimed for this run (run_folder.py). Several
    processes on a machine with no GPU need `cpu=True`, or accelerate would start independent single processes
    instead of one gloo group."""
    args.output_lock = claim_output_dir(args)  # held (open) for the whole run
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


def load_training_data(args, split: str | None = None, max_samples: int | None = None):
    """(dataset, ImageTensors) for the data flags; `split`/`max_samples` override them (held-out evaluation)."""
    dataset = load_image_dataset(args.dataset_name, args.train_data_dir, split or args.dataset_split,
                                 max_samples or args.max_train_samples, args.cache_dir)  # fmt: skip
    return dataset, to_tensors(dataset, args.resolution, args.channels, args.image_column, args.label_column,
                               args.resize_filter)  # fmt: skip


def load_noise_scheduler(args) -> GuidedDDPMScheduler:
    """The noise schedule of the diffusion model a classifier or CLIP will guide: --noise_scheduler's (a pipeline or
    scheduler folder), else one built from --ddpm_num_steps and --ddpm_beta_schedule."""
    if args.noise_scheduler is None:
        return GuidedDDPMScheduler(num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule)
    folder = Path(args.noise_scheduler)
    folder = folder / "scheduler" if (folder / "scheduler" / "scheduler_config.json").is_file() else folder
    if not (folder / "scheduler_config.json").is_file():
        raise ValueError(f"--noise_scheduler {args.noise_scheduler!r} holds no scheduler_config.json (nor scheduler/).")
    return GuidedDDPMScheduler.from_pretrained(folder)


def prepare_training(args, accelerator, model, num_samples: int, project_name: str):
    """(model, optimizer, lr_scheduler, ema, state), prepared and, with --resume_from_checkpoint, restored.
    Sets args.max_train_steps from --num_epochs when it was not given."""
    per_epoch = num_samples // (args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps)
    args.max_train_steps = args.max_train_steps or args.num_epochs * max(per_epoch, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)  # fmt: skip
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps,
                                 num_training_steps=args.max_train_steps)  # fmt: skip
    ema = None
    if args.use_ema:
        ema = EMAModel(model.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=args.ema_inv_gamma,
                       power=args.ema_power, model_cls=type(model), model_config=model.config)  # fmt: skip
    model, optimizer = accelerator.prepare(model, optimizer)
    if ema is not None:
        ema.to(accelerator.device)
    state = LoopState()
    if args.resume_path is not None:
        saved = load_checkpoint(accelerator, args.resume_path, ema)
        lr_scheduler.load_state_dict(saved["lr_scheduler"])
        state = LoopState(saved["step"], saved["train_seconds"], saved["last_loss"], saved["history"])
        accelerator.print(f"resumed from {args.resume_path} at step {state.step}")
    if accelerator.is_main_process:
        scalars = {k: v for k, v in recordable(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(project_name, config=scalars)
    return model, optimizer, lr_scheduler, ema, state


def log_sample_grid(accelerator, args, grid, step: int) -> None:
    """A sample grid (PIL) of a training step: samples/step-N.png in the output folder, and TensorBoard's images."""
    Path(args.output_dir, "samples").mkdir(parents=True, exist_ok=True)
    grid.save(Path(args.output_dir, "samples", f"step-{step}.png"))
    if args.logger == "tensorboard":
        pixels = np.asarray(grid)
        writer = accelerator.get_tracker("tensorboard", unwrap=True)
        writer.add_image("samples", pixels, step, dataformats="HW" if pixels.ndim == 2 else "HWC")


def report_weights_checksum(accelerator, model) -> None:
    """Each process prints the sum of its weights: equal sums show the processes stayed in sync (tests read it).
    One write with its newline: print() writes text and "\\n" separately, and the ranks share one pipe."""
    checksum = sum(p.double().sum().item() for p in accelerator.unwrap_model(model).parameters())
    sys.stdout.write(f"process {accelerator.process_index}/{accelerator.num_processes}: weights checksum {checksum:.10e}\n")
    sys.stdout.flush()


class swapped_in_ema:
    """Use the EMA weights inside the block (for samples or evaluation), the trained ones again after it."""

    def __init__(self, ema, model):
        self.ema, self.parameters = ema, list(model.parameters())

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.parameters)


def finish_output(args, *, title: str, tags: list[str], sections: dict[str, str], **metadata) -> None:
    """The output folder's model card (diffusers library, Apache-2.0 and our tag on every card, then `metadata`,
    e.g. pipeline_tag and datasets) and, with --push_to_hub, the upload."""
    metadata = {"library_name": "diffusers", "license": "apache-2.0", **metadata, "tags": ["guided-diffusers", *tags]}
    write_model_card(args.output_dir, title=title, metadata=metadata, sections=sections)
    if args.push_to_hub:
        publish_to_hub(args)


def publish_to_hub(args) -> None:
    """Upload the output folder (not checkpoints, logs or intermediate samples) with --push_to_hub."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(args.hub_model_id, token=args.hub_token, exist_ok=True)
    upload_folder(repo_id=args.hub_model_id, folder_path=args.output_dir, token=args.hub_token,
                  ignore_patterns=["checkpoint-*", ".tmp-*", "logs/*", "samples/*"])  # fmt: skip
