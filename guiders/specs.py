"""Guiders written as short strings, for command lines and sweeps: `NAME` or `NAME:key=value,key=value`, values
as JSON (numbers, true/false, null, quoted strings, [lists]) or else plain words. NAME is one of SHORT_NAMES or any
guider class name, ours first then diffusers'.

    guider_from_spec("cfg:guidance_scale=3")
    guider_from_spec("apg:guidance_scale=5,eta=0,space=x0")
    guider_from_spec("interval:guidance_scale=3,sigma_lo=0.3,sigma_hi=5")
    guider_from_spec('autoguidance-diffusers:guidance_scale=3,auto_guidance_config={"indices":[0],"fqn":"mid_block.attentions","skip_ff":false}')

Specs joined by `&` are one CombinedGuidance, applied in their order (a later one corrects the first's output):

    guider_from_spec("cfg:guidance_scale=3&clip:clip_scale=10")   # CFG, then CLIP guidance (GLIDE's comparison)
"""

import inspect
import json

from .combined import guider_class

SHORT_NAMES = {
    "cfg": ("ClassifierFreeGuidance", "guided_diffusers"),
    "interval": ("GuidanceIntervalCFG", "guided_diffusers"),
    "scheduled": ("ScheduledCFG", "guided_diffusers"),
    "cfg++": ("CFGPlusPlus", "guided_diffusers"),
    "apg": ("AdaptiveProjectedGuidance", "guided_diffusers"),
    "classifier": ("ClassifierGuidance", "guided_diffusers"),
    "universal": ("UniversalClassifierGuidance", "guided_diffusers"),
    "clip": ("CLIPGuidance", "guided_diffusers"),
    "autoguidance": ("WeakModelGuidance", "guided_diffusers"),
    "apg-diffusers": ("AdaptiveProjectedGuidance", "diffusers"),
    "cfg-zero-star": ("ClassifierFreeZeroStarGuidance", "diffusers"),
    "tcfg": ("TangentialClassifierFreeGuidance", "diffusers"),
    "mag": ("MagnitudeAwareGuidance", "diffusers"),
    "fdg": ("FrequencyDecoupledGuidance", "diffusers"),
    "autoguidance-diffusers": ("AutoGuidance", "diffusers"),
    "pag": ("PerturbedAttentionGuidance", "diffusers"),
}


def parsed_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_options(options: str) -> list[str]:
    """`key=value` items split at the commas outside JSON brackets, braces and strings."""
    items, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(options):
        if char == '"' and options[i - 1 : i] != "\\":
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            items.append(options[start:i])
            start = i + 1
    return [item for item in [*items, options[start:]] if item]


def guider_from_spec(spec: str):
    """The guider a spec names, every key checked against the class's arguments (a misspelt key would otherwise be
    dropped silently by `from_config`); specs joined by `&` make a CombinedGuidance."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"A guider spec must be 'NAME' or 'NAME:key=value,...'; got {spec!r}.")
    if "&" in spec:
        from .combined import CombinedGuidance

        return CombinedGuidance([guider_from_spec(part) for part in spec.split("&")])
    name, _, options = spec.strip().partition(":")
    cls = guider_class(*SHORT_NAMES.get(name, (name, None)))
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kwargs = {}
    for item in split_options(options):
        key, equals, value = item.partition("=")
        if not equals or key.strip() not in accepted:
            raise ValueError(f"Guider spec {spec!r}: {item!r} is not key=value with a key of {cls.__name__} "
                             f"({', '.join(sorted(accepted))}).")  # fmt: skip
        kwargs[key.strip()] = parsed_value(value.strip())
    return cls(**kwargs)


# options that make a spec a point of another method in the tables and fronts: CFG rescale is its own paper's
# method (Lin et al. 2023), and APG on the network's outputs is the side-by-side of the x0-space form (issue 24)
VARIANTS = [("cfg", "guidance_rescale", lambda value: value not in (0, None), "cfg-rescale"),
            ("apg", "space", lambda value: value == "output", "apg-output")]  # fmt: skip


def part_family(part: str) -> str:
    name, _, options = part.strip().partition(":")
    values = dict(item.partition("=")[::2] for item in split_options(options))
    for family, key, applies, variant in VARIANTS:
        if name == family and key in values and applies(parsed_value(values[key].strip())):
            return variant
    return name


def spec_family(spec: str) -> str:
    """The method a spec names (its part before ':', or a variant of VARIANTS; "cfg&clip" for a combination), for
    grouping a sweep's points into one curve per method."""
    return "&".join(part_family(part) for part in spec.split("&"))
