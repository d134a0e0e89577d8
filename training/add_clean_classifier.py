"""Add universal guidance's clean-image classifier to a shipped pipeline folder: the classifier of a
train_classifier.py --noise_free run (the guide-classifier recipe of scripts/train_shipped_models.sh) becomes the
folder's `clean_classifier/` component, and the model card gets a section saying how it was trained, how accurate it
is on held-out images, and what float16 storage does to guided samples.

    python training/add_clean_classifier.py --pipeline checkpoints/mnist --classifier_run runs/mnist-guide-classifier \
        --eval_classifier checkpoints/mnist-eval-classifier --fp16

The folder then loads with it: `GuidedDiffusionPipeline.from_pretrained("checkpoints/mnist")` has a
`clean_classifier`, and `guider=UniversalClassifierGuidance(classifier_scale=s)` samples with universal guidance
(Bansal et al. 2023). The classifier that judges samples (`--eval_classifier`) is refused as the guiding one: a
classifier would grade its own adversarial examples. Re-running replaces the component and its card section; the rest
of the folder is left byte for byte.
"""

import argparse
from pathlib import Path

import torch

from guided_diffusers.guiders import UniversalClassifierGuidance
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.training.folder_components import add_folder_arguments, add_section, check_folder_arguments
from guided_diffusers.training.folder_components import report_size, run_sections, store_and_measure

HEADING = "Clean classifier (universal guidance)"
LIBRARY = ["guided_diffusers.models.noise_aware_classifier", "NoiseAwareClassifier"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_folder_arguments(parser, "classifier_run", "output folder of train_classifier.py --noise_free",
                         "classifier_scale", 10.0, "classifier")  # fmt: skip
    parser.add_argument("--eval_classifier", default=None, help="the classifier that judges samples: refused as the guide")
    args = parser.parse_args(argv)
    check_folder_arguments(args, "classifier_run", ("config.json", "README.md"), "classifier_scale")
    return args


def check_not_the_judge(guide: NoiseAwareClassifier, judge_folder: str | None) -> None:
    if judge_folder is None:
        return
    judge = NoiseAwareClassifier.from_pretrained(judge_folder)
    guide_state, judge_state = guide.state_dict(), judge.state_dict()
    if guide_state.keys() == judge_state.keys() and all(torch.equal(guide_state[k], judge_state[k].to(guide_state[k].dtype))
                                                        for k in guide_state):  # fmt: skip
        raise ValueError(f"--classifier_run holds the weights of --eval_classifier {judge_folder!r}: the guiding "
                         f"classifier must not be the one that judges the samples. Train another one "
                         f"(scripts/train_shipped_models.sh <dataset> guide-classifier).")  # fmt: skip


def card_section(sections: dict, storage: str, args) -> str:
    usage = ("```python\nfrom guided_diffusers.guiders import UniversalClassifierGuidance\n"
             f"images = pipe(batch_size=4, class_labels=[3], "
             f"guider=UniversalClassifierGuidance(classifier_scale={args.classifier_scale:g})).images\n```")  # fmt: skip
    accuracy = sections["Held-out accuracy by timestep"].strip()
    return "\n\n".join([
        "`clean_classifier/`: a classifier of clean images for universal guidance (Bansal et al. 2023): "
        "eps' = eps - s sqrt(1 - abar_t) grad log p(y | x0_hat(x_t)), its gradient taken through the UNet (one more "
        "UNet forward and backward per step). It is a separate model from the evaluation classifier that judges "
        "samples (another preset and seed), so that guidance is never graded by its own guide.", usage,
        "Training:\n\n" + sections["Training"].strip(), "Held-out accuracy: " + accuracy, storage])  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    folder, run = Path(args.pipeline), Path(args.classifier_run)
    sections = run_sections(run)
    if "--noise_free" not in sections.get("Training", ""):
        raise ValueError(f"--classifier_run {str(run)!r} was not trained with --noise_free: universal guidance reads "
                         f"the classifier on clean estimates x0_hat, so it needs a classifier of clean images.")  # fmt: skip
    guide = NoiseAwareClassifier.from_pretrained(run)
    check_not_the_judge(guide, args.eval_classifier)
    full = GuidedDiffusionPipeline.from_pretrained(folder)
    GuidedDiffusionPipeline(full.unet, full.scheduler, null_class_label=full.config.null_class_label,
                            clean_classifier=guide).check_inputs(1, [0], UniversalClassifierGuidance(), "pt")  # fmt: skip
    storage = store_and_measure(full, folder, "clean_classifier", guide, LIBRARY,
                                UniversalClassifierGuidance(classifier_scale=args.classifier_scale),
                                f"universally guided samples at s = {args.classifier_scale:g}", args)  # fmt: skip
    add_section(folder, HEADING, card_section(sections, storage, args), "universal-guidance")
    report_size(folder, "clean_classifier")


if __name__ == "__main__":
    main()
