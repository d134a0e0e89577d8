"""Guidance methods as small guider objects, each one file, compatible with diffusers' `BaseGuidance` and applied
by the pipelines' one denoising loop (`pipelines/denoising.py`). A new method: one file here plus its line below."""

from .adaptive_projected import AdaptiveProjectedGuidance
from .autoguidance import WeakModelGuidance, autoguidance
from .cfg_plus_plus import CFGPlusPlus
from .classifier import ClassifierGuidance, GradientGuidance, classifier_gradient, guide_mean, guide_score
from .clip import CLIPGuidance, clip_gradient
from .classifier_free import ClassifierFreeGuidance, classifier_free_guidance
from .combined import CombinedGuidance
from .context import StepContext
from .diffusers_api import PREDICTIONS, BaseGuidance, GuiderOutput, planned_predictions
from .guidance_interval import GuidanceIntervalCFG
from .guider import Guider
from .scheduled_cfg import ScheduledCFG
from .shorthands import from_scales, guider_for_call
from .specs import SHORT_NAMES, guider_from_spec
from .universal import UniversalClassifierGuidance, clean_classifier_gradient

# our guiders by class name (what a saved `guider_config.json` names)
GUIDERS = {cls.__name__: cls for cls in (ClassifierFreeGuidance, ClassifierGuidance, CombinedGuidance,
                                         GuidanceIntervalCFG, CFGPlusPlus, ScheduledCFG, AdaptiveProjectedGuidance,
                                         WeakModelGuidance, UniversalClassifierGuidance, CLIPGuidance)}

__all__ = [
    "AdaptiveProjectedGuidance",
    "GUIDERS",
    "PREDICTIONS",
    "SHORT_NAMES",
    "ScheduledCFG",
    "BaseGuidance",
    "CFGPlusPlus",
    "CLIPGuidance",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "CombinedGuidance",
    "GradientGuidance",
    "GuidanceIntervalCFG",
    "Guider",
    "GuiderOutput",
    "StepContext",
    "UniversalClassifierGuidance",
    "WeakModelGuidance",
    "autoguidance",
    "classifier_free_guidance",
    "classifier_gradient",
    "clip_gradient",
    "clean_classifier_gradient",
    "from_scales",
    "guide_mean",
    "guide_score",
    "guider_for_call",
    "guider_from_spec",
    "planned_predictions",
]
