"""The sample grids and model-card sections of a text-to-image model, shared by its training script and the
assembly of a shipped folder: held-out prompts, the grid with the model's default thresholding, and the card's
Samples and Usage sections."""

import torch

from ..pipelines.image_utils import make_grid
from ..pipelines.samplers import default_thresholding
from .captions import NO_ITEM, evaluation_prompts


def grid_prompts(dataset: str, count: int, pairs: bool = True) -> list[str]:
    """Held-out prompts for the sample grids: every class alone, then two-item ones (with `pairs`), else the one-item
    prompts of the other templates."""
    prompts = [prompt for prompt, _, right in evaluation_prompts(dataset) if pairs or right == NO_ITEM]
    singles, rest = prompts[:10], prompts[len(prompts) - 90 :: 9] if pairs else prompts[10:]
    return (singles + rest)[:count]


def draws_pairs(pipe) -> bool:
    """Whether a text pipeline's images are the wide two-item canvas (not one item alone, `--canvas item`)."""
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    return width > height


def sample_grid(pipe, dataset: str, count: int, guidance_scale: float, steps: int, seed: int):
    """A grid of held-out prompts with the model's default thresholding (none for a latent model: it bounds pixels)."""
    prompts, thresholding = grid_prompts(dataset, count, draws_pairs(pipe)), default_thresholding(pipe)
    images = pipe(prompts, guidance_scale=guidance_scale, num_inference_steps=steps, thresholding=thresholding,
                  generator=torch.Generator().manual_seed(seed), output_type="np").images  # fmt: skip
    return make_grid(images, rows=max(len(prompts) // 5, 1), scale=2), prompts, thresholding


def samples_section(prompts: list[str], guidance_scale: float, steps: int, thresholding: str, sampler: str) -> str:
    return (f"{sampler} {steps} steps, CFG {guidance_scale:g}, thresholding {thresholding}, held-out prompts (row-major): "
            + "; ".join(f"`{p}`" for p in prompts) + "\n\n![samples](samples.png)")


def usage_section(thresholding: str) -> str:
    return ("```python\nfrom guided_diffusers.pipelines import TextToImagePipeline\n"
            "pipe = TextToImagePipeline.from_pretrained(\"path/or/repo_id\")\n"
            f"images = pipe(\"a 4 to the left of a 9\", guidance_scale=5.0, thresholding=\"{thresholding}\").images\n```")
