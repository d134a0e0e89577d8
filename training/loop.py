"""The training loop shared by our scripts: deterministic batches and noise, gradient accumulation, clipping, EMA,
logging without per-step host synchronisation, atomic checkpoints, and a clean stop on SIGTERM / Ctrl-C.

Every random draw of a step (batch order, timesteps, noise, label dropout) comes from (seed, step, process), not
from generator state, so a run resumed from a checkpoint replays exactly what an uninterrupted run would have done.
"""

import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .checkpointing import StopRequest, save_checkpoint


def batch_indices(num_samples: int, batch_size: int, seed: int, rank: int, world: int, start: int = 0):
    """Index batches for this process from micro-step `start` on; each epoch is a fresh permutation seeded by
    (seed, epoch), split into `world` disjoint shards; the ragged end of an epoch is dropped."""
    per_epoch = num_samples // (batch_size * world)
    if per_epoch == 0:
        raise ValueError(
            f"--train_batch_size {batch_size} x {world} processes is more than the {num_samples} training images."
        )
    micro_step = start
    while True:
        epoch, position = divmod(micro_step, per_epoch)
        order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        shards = order[: per_epoch * batch_size * world].view(per_epoch, world, batch_size)[:, rank]
        for batch in shards[position:]:
            yield batch
            micro_step += 1


def step_generator(seed: int, micro_step: int, rank: int) -> torch.Generator:
    """The random source of one micro-step on one process."""
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_step) * 1024 + rank)


@dataclass
class LoopState:
    step: int = 0
    train_seconds: float = 0.0  # summed over resumed sessions, for the model card
    last_loss: float | None = None
    history: list = field(default_factory=list)  # (step, mean loss) at every logging step


def train(accelerator, model, optimizer, lr_scheduler, ema, compute_loss, num_samples, args, state, on_images=None):
    """Run optimizer steps until args.max_train_steps. `compute_loss(model, indices, generator)` returns a scalar."""
    stop = StopRequest()
    accumulation = args.gradient_accumulation_steps
    batches = batch_indices(num_samples, args.train_batch_size, args.seed, accelerator.process_index,
                            accelerator.num_processes, state.step * accumulation)  # fmt: skip
    progress = tqdm(total=args.max_train_steps, initial=state.step, desc="train",
                    disable=not accelerator.is_local_main_process)  # fmt: skip
    loss_sum, loss_count = torch.zeros((), device=accelerator.device), 0
    session_start, first_step = time.perf_counter(), state.step
    images_per_step = args.train_batch_size * accumulation * accelerator.num_processes
    while state.step < args.max_train_steps:
        for micro in range(accumulation):
            indices = next(batches)
            generator = step_generator(args.seed, state.step * accumulation + micro, accelerator.process_index)
            with accelerator.accumulate(model):
                loss = compute_loss(model, indices, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            loss_count += 1
        lr_scheduler.step()
        if ema is not None:
            ema.step(model.parameters())
        state.step += 1
        progress.update(1)

        logging_now = state.step % args.logging_steps == 0 or state.step == args.max_train_steps
        if logging_now:  # the only place the loss is read back to the host
            mean_loss = (accelerator.reduce(loss_sum, reduction="mean") / loss_count).item()
            elapsed = state.train_seconds + time.perf_counter() - session_start
            state.last_loss = mean_loss
            state.history.append((state.step, mean_loss))
            images_per_second = images_per_step * (state.step - first_step) / (time.perf_counter() - session_start)
            progress.set_postfix(loss=f"{mean_loss:.4f}", images_per_s=f"{images_per_second:.0f}")
            accelerator.log({"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0], "train_seconds": elapsed}, step=state.step)
            loss_sum.zero_()
            loss_count = 0
        stopping = stop.requested(accelerator, check_others=logging_now)
        if stopping or state.step % args.checkpointing_steps == 0:
            _checkpoint(accelerator, lr_scheduler, ema, args, state, session_start)
        if stopping:
            progress.close()
            accelerator.print(f"stopped by signal {stop.signal} at step {state.step}; checkpoint saved. "
                              "Continue with --resume_from_checkpoint latest.")  # fmt: skip
            sys.exit(128 + (stop.signal or 15))
        if on_images is not None and state.step % args.save_images_steps == 0 and accelerator.is_main_process:
            on_images(state.step)
    progress.close()
    state.train_seconds += time.perf_counter() - session_start
    return state


def _checkpoint(accelerator, lr_scheduler, ema, args, state, session_start):
    training_state = {
        "step": state.step,
        "train_seconds": state.train_seconds + time.perf_counter() - session_start,
        "last_loss": state.last_loss,
        "history": state.history,
        "lr_scheduler": lr_scheduler.state_dict(),
    }
    save_checkpoint(accelerator, args.output_dir, state.step, training_state, ema, args.checkpoints_total_limit)
