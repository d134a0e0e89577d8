"""What our DDPM and DDIM schedulers share: the schedule constants (computed once), timestep bookkeeping, the
forward process, and turning a network output into a clipped or thresholded x0.

Subclasses record their arguments with `@register_to_config` and call `_build()`; each adds only its own `step`.
"""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .noise_schedules import make_betas
from .prediction import PREDICTION_TYPES, model_output_from, noisy_sample, x0_and_eps
from .sigmas import karras_timesteps
from .thresholding import clip_or_threshold
from .timesteps import TIMESTEP_SPACINGS, checked_custom_timesteps, spaced_timesteps
from .validation import check_choice, check_range


BOOLEAN_FLAGS = ("clip_sample", "thresholding", "rescale_betas_zero_snr", "set_alpha_to_one", "lower_order_final")


@dataclass
class SchedulerStepOutput(BaseOutput):
    """`prev_sample`: x_{t_prev}, the next input of the sampling loop; `pred_original_sample`: the predicted x0
    (after clipping or thresholding), for previews and guidance."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class DiscreteDiffusionScheduler(SchedulerMixin, ConfigMixin):
    """Base of our discrete-time schedulers; not used on its own."""

    # diffusers' schedulers share one config format, so any of them converts to ours with `from_config` and back.
    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1
    init_noise_sigma = 1.0

    def _build(self) -> None:
        """Validate the config and compute every schedule constant once."""
        config = self.config
        T = config.num_train_timesteps
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"`num_train_timesteps` must be a positive integer; got {T!r}.")
        for flag in BOOLEAN_FLAGS:  # JSON written by hand may say "false", which Python would take as true
            if flag in config and not isinstance(config[flag], bool):
                raise ValueError(f"`{flag}` must be true or false (a boolean); got {config[flag]!r}.")
        check_choice("prediction_type", config.prediction_type, PREDICTION_TYPES)
        check_choice("timestep_spacing", config.timestep_spacing, TIMESTEP_SPACINGS)
        check_range("dynamic_thresholding_ratio", config.dynamic_thresholding_ratio, 0, 1, low_open=True)
        check_range("sample_max_value", config.sample_max_value, low=1, allow_inf=True)
        check_range("clip_sample_range", config.clip_sample_range, low=0, low_open=True)
        self.betas = make_betas(
            T,
            config.beta_start,
            config.beta_end,
            config.beta_schedule,
            config.trained_betas,
            config.rescale_betas_zero_snr,
        )
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # abar_t = prod_{s<=t} (1 - beta_s)
        self.final_alpha_cumprod = torch.tensor(1.0)  # abar of the level the last step lands on (x0 itself)
        self.num_inference_steps = None
        self.custom_timesteps = False
        self.timesteps = torch.arange(T - 1, -1, -1, dtype=torch.int64)
        self._previous = None  # timestep -> the one after it in the schedule, once set_timesteps has run

    def _alpha_prod(self, timestep: int) -> torch.Tensor:
        """abar_t as a float32 scalar tensor, with t < 0 meaning the clean end of the chain.

        Step coefficients are computed from these in float32, in the order diffusers uses: at high noise
        (abar ~ 1e-9 for the cosine schedule) x0 = (x_t - b eps) / a magnifies a one-ulp difference in b by 1 / a,
        so agreeing with diffusers to 1e-5 there needs the same scalar arithmetic, not merely the same formula."""
        return self.alphas_cumprod[timestep] if timestep >= 0 else self.final_alpha_cumprod

    # ----------------------------------------------------------------------------------------------- timesteps
    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None) -> None:
        """Choose the timesteps to sample with: `num_inference_steps` spaced by `timestep_spacing`, or custom
        strictly descending `timesteps`. Exactly one of the two."""
        T = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to `set_timesteps`.")
        if timesteps is not None:
            schedule = checked_custom_timesteps(timesteps, T)
        else:
            schedule = self._spaced_timesteps(num_inference_steps)
        self.custom_timesteps = timesteps is not None
        self.num_inference_steps = len(schedule)
        self.timesteps = torch.from_numpy(schedule).to(device)
        visited = schedule.tolist()
        self._previous = dict(zip(visited, visited[1:] + [-1]))

    def _spaced_timesteps(self, num_inference_steps: int):
        """The timesteps `timestep_spacing` names: Karras levels rounded to timesteps, or a uniform rule."""
        if self.config.timestep_spacing == "karras":
            return karras_timesteps(num_inference_steps, self.alphas_cumprod)
        return self._uniform_timesteps(num_inference_steps)

    def _uniform_timesteps(self, num_inference_steps: int):
        """The DDPM/DDIM rule for a uniform `timestep_spacing`; a solver with another rule overrides this."""
        config = self.config
        return spaced_timesteps(num_inference_steps, config.num_train_timesteps, config.timestep_spacing, config.steps_offset)

    def previous_timestep(self, timestep) -> int:
        """The timestep the step from `timestep` lands on: the next one in the schedule (-1 after the last);
        before `set_timesteps`, t - 1 (the full chain)."""
        t = int(timestep)
        if self._previous is None:
            check_range("timestep", t, 0, self.config.num_train_timesteps - 1)
            return t - 1
        if t not in self._previous:
            raise ValueError(f"`timestep` {t} is not in the schedule set by `set_timesteps`: {list(self._previous)}.")
        return self._previous[t]

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # ------------------------------------------------------------------------------------- forward process
    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """DDPM/DDIM models read x_t unscaled (unlike the sigma-parameterised samplers of k-diffusion)."""
        return sample

    def _alpha_prod_at(self, timesteps, like: torch.Tensor) -> torch.Tensor:
        """abar_t for a batch of integer timesteps, on `like`'s device and in its dtype."""
        timesteps = torch.as_tensor(timesteps, device=like.device)
        T = self.config.num_train_timesteps
        if timesteps.is_floating_point() or timesteps.numel() == 0 or timesteps.min() < 0 or timesteps.max() >= T:
            raise ValueError(f"`timesteps` must be integers in [0, {T - 1}]; got {timesteps.tolist()}.")
        return self.alphas_cumprod.to(like.device)[timesteps].to(like.dtype).flatten()

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho 2020, eq. 4), one timestep per sample."""
        return noisy_sample(original_samples, noise, self._alpha_prod_at(timesteps, original_samples))

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """The v-prediction target v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022)."""
        return model_output_from(sample, noise, self._alpha_prod_at(timesteps, sample), "v_prediction")

    # ------------------------------------------------------------------------------------ step helpers
    def _denoise(self, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor):
        """(x0, eps) from the network output at abar_t; x0 clipped or thresholded as the config asks."""
        x0, eps = x0_and_eps(model_output, sample, alpha_prod, self.config.prediction_type)
        return clip_or_threshold(x0, self.config), eps

    @staticmethod
    def _split_model_output(model_output: torch.Tensor, sample: torch.Tensor):
        """(prediction, predicted variance or None): a learned-variance network (Nichol & Dhariwal 2021) outputs
        2C channels, the prediction then the variance values."""
        if model_output.shape == sample.shape:
            return model_output, None
        channels = sample.shape[1] if sample.ndim > 1 else None
        doubled = (
            channels is not None
            and model_output.ndim == sample.ndim
            and model_output.shape[1] == 2 * channels
            and model_output.shape[0] == sample.shape[0]
            and model_output.shape[2:] == sample.shape[2:]
        )
        if not doubled:
            raise ValueError(
                f"`model_output` has shape {tuple(model_output.shape)}, but `sample` has {tuple(sample.shape)}: "
                "they must match, or the output must have twice the channels (learned variance)."
            )
        prediction, predicted_variance = model_output.split(channels, dim=1)
        return prediction, predicted_variance

    @staticmethod
    def _output(prev_sample: torch.Tensor, x0: torch.Tensor, return_dict: bool):
        """What `step` returns: SchedulerStepOutput, or the tuple (prev_sample, x0)."""
        if not return_dict:
            return prev_sample, x0
        return SchedulerStepOutput(prev_sample=prev_sample, pred_original_sample=x0)

    @staticmethod
    def _check_noise_source(generator, variance_noise, sample: torch.Tensor) -> None:
        if generator is not None and variance_noise is not None:
            raise ValueError("Pass at most one of `generator` and `variance_noise`, not both.")
        if variance_noise is not None and variance_noise.shape != sample.shape:
            raise ValueError(
                f"`variance_noise` must have the shape of `sample` {tuple(sample.shape)}; "
                f"got {tuple(variance_noise.shape)}."
            )

    @staticmethod
    def _noise(like: torch.Tensor, generator, variance_noise) -> torch.Tensor:
        """z ~ N(0, I) drawn exactly as diffusers draws it, so a seed gives the same image with either."""
        if variance_noise is not None:
            return variance_noise
        return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class SeveralEvaluationsPerStep:
    """diffusers' step bookkeeping for a scheduler whose `timesteps` hold one entry per network evaluation, several
    per step (Heun's two, a predictor-corrector's 1 + corrector steps): the entry the next `step` is at, and where
    an image-to-image run starts."""

    _step_index = None
    _begin_index = None

    @property
    def step_index(self):
        return self._step_index

    @property
    def begin_index(self):
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at entry `begin_index` of `timesteps` (image-to-image starts mid-schedule at entry k x order)."""
        self._begin_index = begin_index
