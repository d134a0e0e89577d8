"""Several guidance methods at once: the first guider combines the network's predictions, each later one corrects
that result (ADM's classifier-free + classifier guidance: CFG's output, then the classifier's correction)."""

from . import diffusers_api
from .diffusers_api import CONDITIONINGS, BaseGuidance
from .guider import Guider


def guider_class(name: str, library: str | None = None) -> type:
    """A guider class by name, from `library` ("guided_diffusers" or "diffusers") when given; else ours first
    (ours of the same name read diffusers' configs), then diffusers'."""
    from . import GUIDERS  # the package's registry of our classes

    ours = None if library == "diffusers" else GUIDERS.get(name)
    found = ours or (None if library == "guided_diffusers" else diffusers_api.diffusers_guider(name))
    if found is None:
        raise ValueError(f"Unknown guider {name!r}; ours are {', '.join(GUIDERS)}, or any class in diffusers.guiders.")
    return found


def described(guider: BaseGuidance) -> dict:
    """A member as JSON: its class name, the library it is from (both have an AdaptiveProjectedGuidance), config."""
    library = "guided_diffusers" if isinstance(guider, Guider) else "diffusers"
    config = {k: v for k, v in guider.config.items() if not k.startswith("_")}
    return {"_class_name": type(guider).__name__, "_library": library, **config}


def built(member) -> BaseGuidance:
    if isinstance(member, BaseGuidance):
        return member
    if isinstance(member, dict) and "_class_name" in member:
        config = dict(member)
        return guider_class(config.pop("_class_name"), config.pop("_library", None)).from_config(config)
    raise ValueError(f"A `CombinedGuidance` member must be a guider or its saved config; got {member!r}.")


class CombinedGuidance(Guider):
    """`CombinedGuidance([ClassifierFreeGuidance(guidance_scale=3), ClassifierGuidance(classifier_scale=1)])`.
    The first member may be any guider (ours or diffusers'); the later ones must correct a guided output
    (ours: `ClassifierGuidance`). Saved as one `guider_config.json` listing the members' configs."""

    def __init__(self, guiders: list, start: float = 0.0, stop: float = 1.0, enabled: bool = True):
        members = [built(member) for member in guiders] if isinstance(guiders, (list, tuple)) else []
        if not members:
            raise ValueError(f"`guiders` must be a non-empty list of guiders; got {guiders!r}.")
        for later in members[1:]:
            if getattr(type(later), "correct", Guider.correct) is Guider.correct:  # diffusers' guiders have none
                raise ValueError(f"{type(later).__name__} cannot follow another guider: only a guider that corrects a "
                                 f"guided output (ClassifierGuidance) can; put it first.")  # fmt: skip
        super().__init__(start, stop, enabled)
        self.guiders = members
        self.register_to_config(guiders=[described(member) for member in members], start=start, stop=stop,
                                enabled=enabled)  # fmt: skip

    @property
    def needs_classifier(self) -> bool:
        return any(getattr(member, "needs_classifier", False) for member in self.guiders)

    @property
    def needs_clean_classifier(self) -> bool:
        return any(getattr(member, "needs_clean_classifier", False) for member in self.guiders)

    @property
    def needs_clip(self) -> bool:
        return any(getattr(member, "needs_clip", False) for member in self.guiders)

    @property
    def changes_step(self) -> bool:
        return any(getattr(member, "changes_step", False) for member in self.guiders)

    @property
    def inverts_step(self) -> bool:
        return all(getattr(member, "inverts_step", False) for member in self.guiders if getattr(member, "changes_step", False))

    @property
    def alters_network(self) -> bool:
        return diffusers_api.alters_network(self.guiders[0])

    def prepare_models(self, denoiser) -> None:
        """The first member makes the predictions, so it is the one that may alter the network for some."""
        self.guiders[0].prepare_models(denoiser)

    def cleanup_models(self, denoiser) -> None:
        self.guiders[0].cleanup_models(denoiser)

    def check(self, scheduler, has_classifier: bool, eta: float = 0.0) -> None:
        for member in self.guiders:
            if isinstance(member, Guider):
                member.check(scheduler, has_classifier, eta)

    def set_context(self, context) -> None:
        super().set_context(context)
        for member in self.guiders:
            if isinstance(member, Guider):
                member.set_context(context)

    def set_state(self, step, num_inference_steps, timestep) -> None:
        """The members' step state too; the first member's needs are this step's needs."""
        super().set_state(step, num_inference_steps, timestep)
        first, *_ = [diffusers_api.step_predictions(member, step, num_inference_steps, timestep) for member in self.guiders]
        self._first_needs = first

    def _guiding(self) -> bool:
        return self.in_window() and self._step is not None

    def needed_predictions(self) -> list[str]:
        return [prediction.name for prediction in self._first_needs] if self._guiding() else ["pred_cond"]

    def prepare_inputs(self, data: dict) -> list:
        """The first member's batches, each reading the conditioning that member gave it."""
        if not self._guiding():
            return super().prepare_inputs(data)
        return [self._prepare_batch(data, CONDITIONINGS.index(inputs), name) for name, inputs in self._first_needs]

    def forward(self, pred_cond=None, pred_uncond=None, **other_predictions):
        if not self.in_window():
            return self.output(pred_cond, pred_cond)
        given = {"pred_cond": pred_cond, "pred_uncond": pred_uncond, **other_predictions}
        guided = diffusers_api.combine(self.guiders[0], {name: given[name] for name, _ in self._first_needs})
        for member in self.guiders[1:]:
            guided = member.correct(guided)
        return self.output(guided, pred_cond, pred_uncond)

    def after_step(self, prev_sample, output, pred_original_sample=None):
        if not self.in_window():
            return prev_sample
        for member in self.guiders:
            if isinstance(member, Guider):
                prev_sample = member.after_step(prev_sample, output, pred_original_sample)
        return prev_sample

    def after_inversion_step(self, next_sample, output):
        if not self.in_window():
            return next_sample
        for member in self.guiders:
            if isinstance(member, Guider):
                next_sample = member.after_inversion_step(next_sample, output)
        return next_sample
