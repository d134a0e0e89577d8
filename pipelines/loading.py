"""Load a pipeline folder (or Hub id) as the class its model_index.json names: diffusers' own
`DiffusionPipeline.from_pretrained` looks `_class_name` up in diffusers, which does not hold ours."""

from .pipeline_cascade import CascadePipeline
from .pipeline_guided import GuidedDiffusionPipeline
from .pipeline_super_resolution import SuperResolutionPipeline
from .pipeline_text_cascade import TextCascadePipeline
from .pipeline_text_to_image import TextToImagePipeline

PIPELINE_CLASSES = {cls.__name__: cls for cls in (GuidedDiffusionPipeline, TextToImagePipeline, CascadePipeline,
                                                  TextCascadePipeline, SuperResolutionPipeline)}  # fmt: skip
# other diffusers pipelines whose folders ours load, with the folder's own components
FOREIGN_PIPELINES = {"StableDiffusionPipeline": TextToImagePipeline, "IFPipeline": TextToImagePipeline,
                     "DDPMPipeline": GuidedDiffusionPipeline, "DDIMPipeline": GuidedDiffusionPipeline}


def pipeline_class(source: str) -> type:
    """One of PIPELINE_CLASSES (or the class that loads a FOREIGN_PIPELINES folder), by the folder's model_index.json."""
    class_name = GuidedDiffusionPipeline.load_config(source).get("_class_name")
    known = {**PIPELINE_CLASSES, **FOREIGN_PIPELINES}
    if class_name not in known:
        raise ValueError(f"{source}: a {class_name} folder; supported: {', '.join(known)}.")
    return known[class_name]


def load_pipeline(source: str, **kwargs):
    return pipeline_class(source).from_pretrained(source, **kwargs)  # safetensors only; no remote code
