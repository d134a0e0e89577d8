"""Add autoguidance's weak model to a shipped pipeline folder: the UNet of a train_unet.py run (the weak-unet
recipe of scripts/train_shipped_models.sh) becomes the folder's `weak_unet/` component, and the model card gets a
section saying how it was trained and what float16 storage does to autoguided samples.

    python training/add_weak_unet.py --pipeline checkpoints/mnist --weak_unet_run runs/mnist-weak --fp16

The folder then loads with it: `GuidedDiffusionPipeline.from_pretrained("checkpoints/mnist")` has a `weak_unet`,
and `guider=WeakModelGuidance(guidance_scale=2)` samples with autoguidance (Karras et al. 2024). Re-running replaces
the weak model and its card section; the rest of the folder is left byte for byte.
"""

import argparse
import json
import shutil
from pathlib import Path

from diffusers import UNet2DModel

from guided_diffusers.guiders import WeakModelGuidance
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.pipelines.pipeline_guided import check_weak_unet
from guided_diffusers.training.folder_components import add_folder_arguments, add_section, check_folder_arguments
from guided_diffusers.training.folder_components import report_size, run_sections, store_and_measure

HEADING = "Weak model (autoguidance)"
SCHEDULE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_folder_arguments(parser, "weak_unet_run", "output folder of train_unet.py: the weak model", "guidance_scale",
                         2.0, "weak model")  # fmt: skip
    args = parser.parse_args(argv)
    check_folder_arguments(args, "weak_unet_run", ("unet/config.json", "README.md"), "guidance_scale")
    return args


def check_schedule(pipeline_folder: Path, run: Path) -> None:
    """Autoguidance mixes the two models' predictions at one x_t: they must be trained on the same noise schedule."""
    ours = json.loads((pipeline_folder / "scheduler" / "scheduler_config.json").read_text())
    theirs = json.loads((run / "scheduler" / "scheduler_config.json").read_text())
    for key in SCHEDULE_KEYS:
        if ours.get(key) != theirs.get(key):
            raise ValueError(f"--weak_unet_run was trained with {key} = {theirs.get(key)!r}, the pipeline's UNet with "
                             f"{ours.get(key)!r}: autoguidance needs one noise schedule.")  # fmt: skip


def card_section(run: Path, storage: str, args) -> str:
    parts = run_sections(run)
    usage = ("```python\nfrom guided_diffusers.guiders import WeakModelGuidance\n"
             f"images = pipe(batch_size=4, class_labels=[3], guider=WeakModelGuidance(guidance_scale={args.guidance_scale:g})).images\n```")  # fmt: skip
    return "\n\n".join([
        "`weak_unet/`: a deliberately weaker model of the same data, conditioning and noise schedule, for "
        "autoguidance (Karras et al. 2024): D = D_weak + w (D - D_weak), both conditional, so the unconditional "
        "prediction is never computed. " + parts["Model"].strip(), usage, "Training:\n\n" + parts["Training"].strip(),
        "Samples of the weak model alone (DDIM 50 steps, a row per class):\n\n![weak model samples](weak_unet_samples.png)",
        storage])  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    folder, run = Path(args.pipeline), Path(args.weak_unet_run)
    check_schedule(folder, run)
    weak = UNet2DModel.from_pretrained(run / "unet")
    full = GuidedDiffusionPipeline.from_pretrained(folder)
    check_weak_unet(weak, full.unet)
    storage = store_and_measure(full, folder, "weak_unet", weak, ["diffusers", "UNet2DModel"],
                                WeakModelGuidance(guidance_scale=args.guidance_scale),
                                f"autoguided samples at w = {args.guidance_scale:g}", args)  # fmt: skip
    if (run / "samples.png").is_file():
        shutil.copy(run / "samples.png", folder / "weak_unet_samples.png")
    add_section(folder, HEADING, card_section(run, storage, args), "autoguidance")
    report_size(folder, "weak_unet")


if __name__ == "__main__":
    main()
