"""Which of the T training timesteps a sampler visits (Lin et al. 2024, Table 2 names the spacings)."""

import numpy as np

from .validation import check_choice

UNIFORM_SPACINGS = ("leading", "trailing", "linspace")
# "karras": Karras 2022's levels rounded to training timesteps (sigmas.karras_timesteps); it needs the noise schedule
TIMESTEP_SPACINGS = (*UNIFORM_SPACINGS, "karras")


def check_step_count(num_inference_steps, num_train_timesteps: int) -> None:
    """Raise unless `num_inference_steps` is an integer in [1, num_train_timesteps]."""
    n, T = num_inference_steps, num_train_timesteps
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= T:
        raise ValueError(f"`num_inference_steps` must be an integer in [1, num_train_timesteps={T}]; got {n!r}.")


def spaced_timesteps(num_inference_steps: int, num_train_timesteps: int, spacing: str, steps_offset: int = 0):
    """Descending int64 timesteps, exactly as diffusers computes them for the same config:
    - leading:  0, k, 2k, ... (+ steps_offset), k = T // n   (DDIM paper; never visits t = T - 1)
    - trailing: T - 1, T - 1 - T/n, ... rounded             (Lin 2024: starts at the noisiest step)
    - linspace: round(linspace(0, T - 1, n))
    """
    n, T = num_inference_steps, num_train_timesteps
    check_step_count(n, T)
    check_choice("timestep_spacing", spacing, UNIFORM_SPACINGS)
    if spacing == "linspace":
        timesteps = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        timesteps = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + steps_offset
    else:
        timesteps = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    if timesteps.max() >= T or timesteps.min() < 0:
        raise ValueError(
            f"`steps_offset`={steps_offset} moves the timesteps outside [0, {T - 1}] for "
            f"`num_inference_steps`={n}; use a smaller offset or fewer steps."
        )
    return timesteps.copy()


def solver_timesteps(num_inference_steps: int, num_train_timesteps: int, spacing: str, steps_offset: int = 0):
    """The rule of diffusers' DPMSolverMultistepScheduler: n + 1 points spaced over [0, T) with the clean end dropped,
    since its last step lands on x0 itself (sigma = 0):
    - linspace: round(linspace(0, T - 1, n + 1))[1:]      (10 of 1000: 999, 899, ..., 100)
    - leading:  0, k, ..., n k with k = T // (n + 1), without 0 (+ steps_offset)
    - trailing: as spaced_timesteps (already ends one step above the clean end)
    """
    n, T = num_inference_steps, num_train_timesteps
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n < T:
        raise ValueError(f"`num_inference_steps` must be an integer in [1, num_train_timesteps - 1 = {T - 1}]; got {n!r}.")
    check_choice("timestep_spacing", spacing, UNIFORM_SPACINGS)
    if spacing == "trailing":
        return spaced_timesteps(n, T, spacing, steps_offset)
    if spacing == "linspace":
        timesteps = np.linspace(0, T - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    else:
        timesteps = (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1].astype(np.int64) + steps_offset
    if timesteps.max() >= T:
        raise ValueError(f"`steps_offset`={steps_offset} moves the timesteps past {T - 1}; use a smaller offset.")
    return timesteps.copy()


def checked_custom_timesteps(timesteps, num_train_timesteps: int):
    """Custom timesteps as a descending int64 array; they must be strictly descending integers in [0, T)."""
    array = np.asarray(timesteps)
    if array.ndim != 1 or len(array) == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"`timesteps` must be a non-empty 1-D sequence of integers; got {timesteps!r}.")
    if (np.diff(array) >= 0).any():
        raise ValueError(f"`timesteps` must be strictly descending; got {array.tolist()}.")
    if array[0] >= num_train_timesteps or array[-1] < 0:
        raise ValueError(
            f"`timesteps` must lie in [0, num_train_timesteps - 1 = {num_train_timesteps - 1}]; got {array.tolist()}."
        )
    return array.astype(np.int64)
