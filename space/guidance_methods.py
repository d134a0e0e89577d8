"""The guidance methods the Space offers, each a guider with its own controls: ours (CFG and its rescale, guidance
interval, scheduled CFG, APG in x0 space, autoguidance, CFG++, universal guidance, classifier guidance) and diffusers'
(APG on the outputs, CFG-Zero*, TCFG, MAG, layer-skip AutoGuidance), all applied by the library's one denoising loop. A method here is a name, a line on what it does, its extra controls, how its guider is built from them, and
the pipeline component it needs, if any; the UI and the API read this table, so a new method is one entry."""

from dataclasses import dataclass, field

from diffusers.guiders import (
    AdaptiveProjectedGuidance, AutoGuidance, ClassifierFreeZeroStarGuidance, MagnitudeAwareGuidance,
    TangentialClassifierFreeGuidance,
)  # fmt: skip
from diffusers.hooks import LayerSkipConfig

from guided_diffusers.guiders import (
    CFGPlusPlus, ClassifierFreeGuidance, ClassifierGuidance, GuidanceIntervalCFG, ScheduledCFG,
    UniversalClassifierGuidance, WeakModelGuidance,
)  # fmt: skip
from guided_diffusers.guiders import AdaptiveProjectedGuidance as ProjectedGuidanceInX0

from .controls import choice, number


@dataclass(frozen=True)
class Control:
    """One extra slider: its API name, label, range, default and step."""

    name: str
    label: str
    low: float
    high: float
    default: float
    step: float = 0.05
    integer: bool = False
    symbol: str = ""  # its name in a sweep's row labels


GUIDANCE_SCALE = Control("guidance_scale", "guidance scale w", 0, 50, 3.0, 0.5, symbol="w")


@dataclass(frozen=True)
class Method:
    title: str
    about: str
    build: object  # (w, {control name: value}) -> guider
    controls: list = field(default_factory=list)
    needs: str | None = None  # what the method cannot work without: a pipeline component, or a module inside one
    scale: str | None = None  # the control that takes the place of w (w is then not read), e.g. CFG++'s lambda

    def scale_control(self) -> Control:
        """What a guidance sweep varies: the method's own scale, or w."""
        return next(c for c in self.controls if c.name == self.scale) if self.scale else GUIDANCE_SCALE


def universal_guider(w: float, extra: dict):
    """At w = 0 the unconditional model steered alone (x0_hat from it); otherwise CFG at w, then the correction."""
    scale = extra["universal_scale"]
    if w == 0:
        return UniversalClassifierGuidance(classifier_scale=scale, prediction="pred_uncond")
    return [ClassifierFreeGuidance(guidance_scale=w), UniversalClassifierGuidance(classifier_scale=scale)]


METHODS = {
    "cfg": Method("Classifier-free guidance (CFG)",
                  "Ho & Salimans 2022: uncond + w (cond - uncond); rescale phi > 0 matches the conditional output's "
                  "spread (Lin et al. 2023).",
                  lambda w, extra: ClassifierFreeGuidance(guidance_scale=w, guidance_rescale=extra["cfg_rescale"]),
                  [Control("cfg_rescale", "CFG rescale phi", 0, 1, 0.0)]),
    "apg": Method("Adaptive projected guidance (APG), on the outputs",
                  "Sadat et al. 2024: the CFG update split into parts parallel and orthogonal to the conditional "
                  "prediction, the parallel part scaled by eta, its norm capped at r, with negative momentum beta.",
                  lambda w, extra: AdaptiveProjectedGuidance(
                      guidance_scale=w, eta=extra["apg_eta"], adaptive_projected_guidance_rescale=extra["apg_threshold"],
                      adaptive_projected_guidance_momentum=extra["apg_momentum"] or None),
                  [Control("apg_eta", "APG parallel weight eta", 0, 1, 0.0),
                   Control("apg_threshold", "APG norm threshold r", 0, 50, 15.0, 0.5),
                   Control("apg_momentum", "APG momentum beta (0: none)", -1, 0, -0.5)]),
    "apg-x0": Method("APG in x0 space (the authors' choice)",
                     "Sadat et al. 2024 as the paper recommends: APG on the clean estimates x0(cond), x0(uncond), "
                     "D = D_c + (w - 1) update (w >= 1), the update's part parallel to the conditional image weighted "
                     "by eta, its norm capped at 15, no momentum (the measured setting).",
                     lambda w, extra: ProjectedGuidanceInX0(guidance_scale=w, eta=extra["apg_x0_eta"], space="x0"),
                     [Control("apg_x0_eta", "APG (x0) parallel weight eta", 0, 1, 0.0)]),
    "scheduled-linear": Method("Scheduled CFG, linear ramp",
                               "Wang et al. 2024: w(t) = 2 w (1 - t), t in log sigma from 0 at the cleanest level to "
                               "1 at the noisiest: no guidance at first, 2 w at the end, w on average.",
                               lambda w, extra: ScheduledCFG(guidance_scale=w, schedule="linear")),
    "scheduled-cosine": Method("Scheduled CFG, cosine ramp",
                               "Wang et al. 2024: w(t) = w (cos(pi t) + 1), t in log sigma from 0 at the cleanest "
                               "level to 1 at the noisiest: little guidance while the layout forms, 2 w at the end.",
                               lambda w, extra: ScheduledCFG(guidance_scale=w, schedule="cosine")),
    "cfg-zero-star": Method("CFG-Zero*",
                            "Fan et al. 2025: the unconditional prediction scaled by its optimal projection onto the "
                            "conditional one, and the first steps' output zeroed.",
                            lambda w, extra: ClassifierFreeZeroStarGuidance(guidance_scale=w,
                                                                            zero_init_steps=int(extra["zero_init_steps"])),
                            [Control("zero_init_steps", "CFG-Zero* zeroed first steps", 0, 5, 1, 1, integer=True)]),
    "tcfg": Method("Tangential CFG (TCFG)",
                   "Kwon et al. 2025: the unconditional prediction with its component along the leading singular "
                   "direction of [cond; uncond] removed, then CFG.",
                   lambda w, extra: TangentialClassifierFreeGuidance(guidance_scale=w)),
    "mag": Method("Magnitude-aware guidance (MAMBO-G)",
                  "arXiv 2508.03442 (diffusers' MagnitudeAwareGuidance): CFG at 1 + (w - 1) exp(-alpha r), "
                  "r = ||cond - uncond|| / ||uncond|| per image: the scale falls where the update is large. On the "
                  "shipped models r is 0.003-0.07 (benchmarks/guidance_update_ratio.py): alpha = 8 is nearly CFG, "
                  "alpha = 50 guides most at high noise.",
                  lambda w, extra: MagnitudeAwareGuidance(guidance_scale=w, alpha=extra["mag_alpha"]),
                  [Control("mag_alpha", "MAG alpha", 0, 500, 8.0, 1)]),
    "autoguidance-diffusers": Method("diffusers' AutoGuidance (a layer dropped)",
                                     "diffusers' stand-in for autoguidance: the 'weak model' is this UNet with its "
                                     "mid-block attention dropped, given the unconditional inputs; one more UNet "
                                     "call per step. Compare Autoguidance (a weak model), a separately trained one.",
                                     lambda w, extra: AutoGuidance(guidance_scale=w, auto_guidance_config=LayerSkipConfig(
                                         indices=[0], fqn="mid_block.attentions", skip_ff=False)),
                                     needs="unet.mid_block.attentions.0"),
    "interval": Method("CFG in a noise-level interval",
                       "Kynkäänniemi et al. 2024: CFG only while sigma_lo < sigma <= sigma_hi (sigma = sqrt((1 - abar) "
                       "/ abar), the same for every sampler and step count); the conditional model elsewhere, where "
                       "the unconditional pass is skipped.",
                       lambda w, extra: GuidanceIntervalCFG(guidance_scale=w, sigma_lo=extra["sigma_lo"],
                                                            sigma_hi=extra["sigma_hi"]),
                       [Control("sigma_lo", "interval: lowest sigma (exclusive)", 0, 20, 0.28, 0.01),
                        Control("sigma_hi", "interval: highest sigma", 0.01, 160, 5.42, 0.01)]),
    "cfg++": Method("CFG++ (guidance on the data manifold)",
                    "Chung et al. 2024: x0 from CFG at lambda in [0, 1] (its own slider; w is not used), re-noised with "
                    "the unconditional noise; with DDIM (eta = 0) or DPM-Solver++ only. The paper puts lambda 0.2-1.0 "
                    "at CFG's w ~ 2-12: the re-noising compounds the guidance.",
                    lambda w, extra: CFGPlusPlus(guidance_scale=extra["cfgpp_lambda"]),
                    [Control("cfgpp_lambda", "CFG++ lambda (in place of w)", 0, 1, 0.2, symbol="lambda")], scale="cfgpp_lambda"),
    "universal": Method("Universal guidance (a clean classifier through x0)",
                        "Bansal et al. 2023: the gradient of the model's clean_classifier, a classifier of clean "
                        "images, read on the predicted x0 and taken through the UNet (one more UNet forward and "
                        "backward per step), after CFG at w; at w = 0 it steers the unconditional model alone.",
                        universal_guider, [Control("universal_scale", "universal guidance scale s", 0, 100, 10.0, 1)],
                        needs="clean_classifier"),
    "autoguidance": Method("Autoguidance (a weak model)",
                           "Karras et al. 2024: weak + w (cond - weak), away from the model's weak_unet (a tiny UNet "
                           "trained briefly on the same data) instead of the unconditional model; the paper finds it "
                           "fixes bad samples without CFG's loss of variety. Only above sigma_lo: below it, guiding "
                           "away from the weak model's errors leaves grain in the background (measured on MNIST).",
                           lambda w, extra: WeakModelGuidance(guidance_scale=w,
                                                              sigma_lo=extra["autoguidance_sigma_lo"]),
                           [Control("autoguidance_sigma_lo", "autoguidance: lowest sigma (exclusive)", 0, 20, 0.6,
                                    0.01)],
                           needs="weak_unet"),
}  # fmt: skip
EXTRA_CONTROLS = [control for method in METHODS.values() for control in method.controls]


def method_guider(method, guidance, classifier_scale, extra: dict, class_given: bool):
    """The guider for a request, every control checked: the method at scale w (the conditional model when no
    class is chosen), followed by classifier guidance when s > 0."""
    method = choice(method, "guidance method", METHODS)
    values = {control.name: number(extra.get(control.name, control.default), control.label, control.low, control.high,
                                   integer=control.integer) for control in EXTRA_CONTROLS}  # fmt: skip
    if not class_given:
        return None
    guider = METHODS[method].build(guidance, values)
    if classifier_scale == 0:
        return guider
    return [*(guider if isinstance(guider, list) else [guider]), ClassifierGuidance(classifier_scale=classifier_scale)]
