"""Guided sampling pipelines and the guidance rules they apply."""

from .guidance import classifier_free_guidance, classifier_gradient, guide_mean, guide_score
from .inversion import InversionOutput, slerp
from .loading import PIPELINE_CLASSES, load_pipeline, pipeline_class
from .pipeline_guided import GuidedDiffusionPipeline, GuidedPipelineOutput
from .pipeline_text_to_image import TextToImagePipeline
from .samplers import SAMPLERS, make_scheduler

__all__ = [
    "GuidedDiffusionPipeline",
    "GuidedPipelineOutput",
    "InversionOutput",
    "PIPELINE_CLASSES",
    "SAMPLERS",
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
