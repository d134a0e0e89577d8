"""Guided sampling pipelines, and the one denoising loop they share (`denoising.py`). The guidance rules live in
`guided_diffusers.guiders`; their equations are re-exported here for code written before that package existed."""

from ..guiders import classifier_free_guidance, classifier_gradient, guide_mean, guide_score
from .denoising import Conditioning
from .inversion import InversionOutput, slerp
from .loading import PIPELINE_CLASSES, load_pipeline, pipeline_class
from .pipeline_cascade import CascadeOutput, CascadePipeline
from .pipeline_guided import GuidedDiffusionPipeline, GuidedPipelineOutput
from .pipeline_super_resolution import SuperResolutionPipeline
from .pipeline_text_cascade import TextCascadePipeline
from .pipeline_text_to_image import TextToImagePipeline
from .samplers import SAMPLERS, make_scheduler

__all__ = [
    "CascadeOutput",
    "CascadePipeline",
    "Conditioning",
    "GuidedDiffusionPipeline",
    "GuidedPipelineOutput",
    "InversionOutput",
    "PIPELINE_CLASSES",
    "SAMPLERS",
    "SuperResolutionPipeline",
    "TextCascadePipeline",
    "TextToImagePipeline",
    "classifier_free_guidance",
    "classifier_gradient",
    "guide_mean",
    "guide_score",
    "load_pipeline",
    "make_scheduler",
    "pipeline_class",
    "slerp",
]
