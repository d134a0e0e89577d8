"""The Guidance methods tab's action: each guidance method at its best measured setting in the model's own sweep of
guiders (`guided_diffusers.evaluation.method_table`, the rule the sweep's results.md uses), one seed and class, over
the library's public API, with the numbers measured there beside this run's network evaluations."""

import gradio as gr

from guided_diffusers.evaluation.method_table import accuracy_cell, accuracy_goal, best_points, fd_ratio_cells
from guided_diffusers.guiders import guider_from_spec, planned_predictions
from guided_diffusers.guiders.specs import spec_family
from guided_diffusers.pipelines.denoising import WEAK

from .actions import compared
from .controls import MAX_SEED, class_index, number, pick, refuse, user_facing
from .guidance_methods import METHODS

COMPONENT_FLAGS = [("needs_classifier", "classifier"), ("needs_clean_classifier", "clean_classifier"),
                   ("needs_clip", "clip_model")]  # fmt: skip
SHORT_OPTIONS = {"guidance_scale=": "w=", "guidance_rescale=": "phi=", "classifier_scale=": "s=",
                 ",prediction=pred_uncond": " (uncond)"}  # fmt: skip


def missing_component(pipe, guider, steps: int) -> str | None:
    """The pipeline component a guider reads that this pipeline lacks (a Hub copy may ship fewer than the sweep's)."""
    for flag, component in COMPONENT_FLAGS:
        if getattr(guider, flag, False) and getattr(pipe, component, None) is None:
            return component
    weak = any(p.name == WEAK for step in planned_predictions(guider, steps) for p in step)
    return "weak_unet" if weak and pipe.weak_unet is None else None


def point_label(spec: str) -> str:
    """A sweep point's row label: its method, then its options, shortened (w, s) and cut to fit the margin."""
    options = spec.partition(":")[2] if "&" not in spec else spec
    method = METHODS.get(spec_family(spec))  # a method whose own scale takes w's place names it (CFG++'s lambda)
    if method is not None and method.scale:
        options = options.replace("guidance_scale=", f"{method.scale_control().symbol}=")
    if spec_family(spec) == "scheduled" and "schedule=" not in options:  # the ramp's shape is the method: name it
        options += f",schedule={guider_from_spec(spec).config.schedule}"
    for long, short in SHORT_OPTIONS.items():
        options = options.replace(long, short)
    return f"{spec_family(spec)}\n{options[:24] + '...' if len(options) > 27 else options}"


@user_facing
def guidance_methods(models, model, label, seed, count=4, progress=gr.Progress(), request: gr.Request = None):
    """One seed and class, a row per guidance method at its best measured setting in the model's own sweep of
    guiders (`evaluation.method_table`: at the accuracy goal, the lowest FD in the worse feature space), and a table
    with each row's numbers measured there (N per point as the sweep says) beside this run's network evaluations."""
    served = pick(models, model)
    report = served.methods_report
    if report is None:
        raise refuse(f"{served.name} has no measured sweep of guidance methods (evaluation/<name>-guidance-methods/"
                     "results.json in its folder): choose a model that has one.")  # fmt: skip
    index = class_index(served, label)
    if index is None:
        raise refuse("Guidance methods guide towards a class: choose one (not unconditional).")
    seed, count = number(seed, "seed", 0, MAX_SEED, integer=True), number(count, "images per method", 1, 8, integer=True)
    goal, floor = accuracy_goal(report), report["real_data_floor"]
    settings, measured, skipped = [], {}, []
    for point in best_points(report["rows"], goal, floor):
        row = point.row
        guider = guider_from_spec(row["guider"])  # a new guider per request: APG's momentum is per run
        missing = missing_component(served.pipe, guider, row["num_inference_steps"])
        if missing:
            skipped.append(f"{point.method} (this copy of {served.name} has no `{missing}`)")
            continue
        options = dict(batch_size=count, class_labels=[index] * count, guider=guider, eta=row.get("eta", 0.0),
                       num_inference_steps=row["num_inference_steps"], thresholding=row["thresholding"])  # fmt: skip
        settings.append((point_label(row["guider"]), row["sampler"], options))
        measured[id(options)] = point

    def statistics(options, images, run):
        point = measured[id(options)]
        row, counts = point.row, run["evaluations"]
        others = ", ".join(f"{count} {name.replace('_', ' ').replace('unet', 'UNet')}" for name, count in counts.items()
                           if name != "unet" and not name.endswith("_calls") and count)  # calls: batched passes
        return [accuracy_cell(point), " / ".join(fd_ratio_cells(row, floor)), f"{row['recall']:.3f}",
                f"{counts['unet']}" + (f" + {others}" if others else "")]  # fmt: skip

    header = ["method, setting", "accuracy (measured)", "FD own / EffNet, x floor (measured)", "recall (measured)",
              "network evaluations (this run)"]  # fmt: skip
    picture, text = compared(served, settings, seed, progress, request, "guidance-methods", header, statistics)
    n = report.get("arguments", {}).get("num_samples")
    samples = f"{n:,}" if n else "the"
    note = (f"\n\nMeasured over {samples} samples per point in `{served.name}`'s sweep: each method's point with "
            f"accuracy >= {goal:.0%} and the lowest FD as a multiple of the real-data floor in the worse of the two feature "
            "spaces (own classifier, EfficientNet-Lite0).")  # fmt: skip
    return picture, text + note + (f"\n\nNot shown: {'; '.join(skipped)}." if skipped else "")
