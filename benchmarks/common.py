"""What every benchmark prints with its numbers (the machine it ran on), and the timing and cost helpers they share."""

import platform
import time

import torch

from guided_diffusers.pipelines import make_scheduler
from guided_diffusers.pipelines.samplers import set_distinct_timesteps
from guided_diffusers.training.model_card import hardware


def machine_line() -> str:
    return f"machine: {hardware()}; torch {torch.__version__}; Python {platform.python_version()}"


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def best_of_interleaved(runs: dict, repeats: int) -> dict:
    """Best-of-`repeats` seconds of each run (as timeit advises: other load only ever adds time, and this is a
    shared 2-core VM), alternating runs within each repeat so machine drift hits all alike; one warm-up each."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(seconds(run))
    return {name: min(values) for name, values in times.items()}


def repeated(run, times: int):
    """`run` called `times` times, as one timed unit."""
    return lambda: [run() for _ in range(times)]


def unet_training_step(unet, x: torch.Tensor, **conditioning):
    """One optimizer step's closure (forward, backward, AdamW) of `unet` on fixed random inputs of its size; the data's
    cost is not what these benchmarks ask about."""
    timesteps = torch.randint(0, 1000, (x.shape[0],))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)

    def step():
        loss = (unet(x, timesteps, **conditioning).sample - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def network_calls(pipe, sampler: str, steps: int) -> int:
    """Network calls per image of `sampler` at `steps`: one per entry of its timesteps (the loop makes one there)."""
    scheduler = make_scheduler(sampler, pipe.scheduler.config)
    set_distinct_timesteps(scheduler, steps)
    return len(scheduler.timesteps)
