"""`Guider`, the base of our guidance methods: a diffusers `BaseGuidance` (config, `guider_config.json`,
`save_pretrained` / `from_pretrained`, `new(**overrides)`, `start` / `stop` / `enabled`) that also sees the
step's `StepContext`, and may correct the guided output or the sampler's step.

A subclass sets `_input_predictions`, records its arguments with `@register_to_config`, and writes
- `needed_predictions()`: the predictions it needs at this step (fewer when it is idle: no second half computed);
- `forward(pred_cond=None, pred_uncond=None)`: the paper's equation, returning a `GuiderOutput`;
- optionally `correct(output)`, a change to a guided output (used when it follows another guider in a
  `CombinedGuidance`), and `after_step(prev_sample, output, pred_original_sample)`, a change to the sampler's
  result (set `changes_step = True`: inversion, which takes no sampler step, then refuses it, unless the guider also
  writes `after_inversion_step` and sets `inverts_step = True`);
- optionally `check(scheduler, has_classifier, eta)`: refuse, before any network runs, what it cannot do.
"""

import torch

from ..schedulers.validation import check_range
from .context import StepContext
from .diffusers_api import BaseGuidance, GuiderOutput, quiet_construction


def check_sigma_interval(sigma_lo: float, sigma_hi: float) -> None:
    check_range("sigma_lo", sigma_lo, low=0)
    check_range("sigma_hi", sigma_hi, low=0, allow_inf=True)
    if not sigma_lo < sigma_hi:
        raise ValueError(f"The interval needs 0 <= `sigma_lo` < `sigma_hi`; got ({sigma_lo}, {sigma_hi}].")


class Guider(BaseGuidance):
    _input_predictions = ["pred_cond", "pred_uncond"]
    needs_classifier = False
    changes_step = False  # whether after_step replaces the sampler's own update (not just adds a guidance term)
    inverts_step = False  # whether after_inversion_step runs after_step's change backwards (CFG++), for inversion
    alters_network = False  # whether prepare_models hooks the network for a prediction (diffusers' PAG, SLG do)

    def __init__(self, start: float = 0.0, stop: float = 1.0, enabled: bool = True):
        with quiet_construction():
            super().__init__(start, stop, enabled)
        self.context: StepContext | None = None

    def set_context(self, context: StepContext) -> None:
        self.context = context

    # ------------------------------------------------------------------------------- which predictions
    def in_window(self) -> bool:
        """Enabled, and the step inside [start, stop) as a fraction of the steps (diffusers' rule)."""
        if not self._enabled:
            return False
        if self._num_inference_steps is None:
            return True
        steps = self._num_inference_steps
        return int(self._start * steps) <= self._step < int(self._stop * steps)

    def outside_sigma_interval(self, sigma_lo: float, sigma_hi: float) -> bool:
        """Whether this step's noise level lies outside (sigma_lo, sigma_hi] (Kynkaanniemi et al. 2024's interval, in
        sigma = sqrt((1 - abar_t) / abar_t): one setting means the same for every sampler and step count). False
        without a context (a cost estimate before sampling counts the most a step can need)."""
        return self.context is not None and not sigma_lo < self.context.sigma <= sigma_hi

    def needed_predictions(self) -> list[str]:
        return list(self._input_predictions)

    def prepare_inputs(self, data: dict) -> list:
        """diffusers' protocol: one batch per needed prediction; tuple fields give index 0 to the conditional
        batch and 1 to the unconditional one."""
        return [self._prepare_batch(data, int(name == "pred_uncond"), name) for name in self.needed_predictions()]

    def prepare_inputs_from_block_state(self, data, input_fields: dict) -> list:
        return [self._prepare_batch_from_block_state(input_fields, data, int(name == "pred_uncond"), name)
                for name in self.needed_predictions()]  # fmt: skip

    @property
    def num_conditions(self) -> int:
        return len(self.needed_predictions())

    @property
    def is_conditional(self) -> bool:
        return self._count_prepared == 1

    # ------------------------------------------------------------------------------- applying it
    def correct(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def after_step(self, prev_sample: torch.Tensor, output: torch.Tensor, pred_original_sample=None) -> torch.Tensor:
        return prev_sample

    def after_inversion_step(self, next_sample: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """A change to DDIM inversion's x_t, the inverse of this guider's `after_step` change."""
        return next_sample

    def check(self, scheduler, has_classifier: bool, eta: float = 0.0) -> None:
        pass

    def split_output(self, output: torch.Tensor | None):
        """(prediction, learned variance or None). A learned-variance network outputs 2C channels: guidance
        extrapolates the prediction only, and the variance is the conditional branch's, as GLIDE and DeepFloyd IF
        sample (extrapolating improved DDPM's interpolation weight v would leave [beta_tilde_t, beta_t]). Outside
        our loop (no context) the whole output is the prediction."""
        if self.context is None or output is None:
            return output, None
        return self.context.split(output)

    @staticmethod
    def joined(prediction: torch.Tensor, variance: torch.Tensor | None) -> torch.Tensor:
        return prediction if variance is None else torch.cat([prediction, variance], dim=1)

    @staticmethod
    def output(pred, pred_cond=None, pred_uncond=None) -> GuiderOutput:
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)
