"""The guider a pipeline call means: the one passed as `guider=`, or the one its `guidance_scale=` /
`classifier_scale=` shorthands stand for, as a private copy for this call."""

import copy

from ..schedulers.validation import check_range
from .classifier import ClassifierGuidance
from .classifier_free import ClassifierFreeGuidance
from .combined import CombinedGuidance
from .diffusers_api import BaseGuidance


def from_scales(guidance_scale: float, classifier_scale: float = 0.0) -> BaseGuidance:
    """w: classifier-free guidance (0 unconditional, 1 conditional); s > 0 adds classifier guidance after it."""
    check_range("guidance_scale", guidance_scale, low=0)
    check_range("classifier_scale", classifier_scale, low=0)
    cfg = ClassifierFreeGuidance(guidance_scale=guidance_scale)
    if classifier_scale == 0:
        return cfg
    return CombinedGuidance([cfg, ClassifierGuidance(classifier_scale=classifier_scale)])


def guider_for_call(guider, guidance_scale: float | None, classifier_scale: float | None = None,
                    default_guidance_scale: float = 1.0) -> BaseGuidance:  # fmt: skip
    """A fresh copy of `guider` (a guider, or a list of them: a CombinedGuidance), so that per-call state (step,
    APG's momentum, a classifier gradient) never leaks between calls or threads; else the shorthands' guider."""
    if guider is None:
        scale = default_guidance_scale if guidance_scale is None else guidance_scale
        return from_scales(scale, 0.0 if classifier_scale is None else classifier_scale)
    if guidance_scale is not None or classifier_scale is not None:
        given = [name for name, value in (("guidance_scale", guidance_scale), ("classifier_scale", classifier_scale))
                 if value is not None]  # fmt: skip
        raise ValueError(f"Pass either `guider` or {' / '.join(f'`{n}`' for n in given)}, not both: the guider "
                         f"holds its own scale (e.g. ClassifierFreeGuidance(guidance_scale=3)); for CFG + classifier "
                         f"guidance pass a list, guider=[ClassifierFreeGuidance(...), ClassifierGuidance(...)].")  # fmt: skip
    if isinstance(guider, (list, tuple)):
        return CombinedGuidance([copy.deepcopy(member) for member in guider])
    if not isinstance(guider, BaseGuidance):
        raise ValueError(f"`guider` must be a guider (guided_diffusers.guiders or diffusers.guiders) or a list of "
                         f"them; got {type(guider).__name__}.")  # fmt: skip
    return copy.deepcopy(guider)
