"""guiders/specs.py: guiders written as strings, and the method a sweep's point belongs to."""

import pytest

from guided_diffusers.guiders import ClassifierFreeGuidance
from guided_diffusers.guiders.specs import guider_from_spec, spec_family


@pytest.mark.parametrize("spec, family", [("cfg:guidance_scale=3", "cfg"), ("cfg:guidance_scale=3,guidance_rescale=0", "cfg"),
                                          ("cfg:guidance_scale=3,guidance_rescale=0.7", "cfg-rescale"),
                                          ("apg:guidance_scale=3,eta=0", "apg"), ("apg:space=x0", "apg"),
                                          ("apg:guidance_scale=3,space=output", "apg-output"),
                                          ("cfg:guidance_rescale=0.5&clip:clip_scale=10", "cfg-rescale&clip")])  # fmt: skip
def test_cfg_rescale_and_apg_on_outputs_are_methods_of_their_own_in_the_tables(spec, family):
    assert spec_family(spec) == family


def test_a_rescaled_cfg_spec_builds_the_rescaled_guider():
    guider = guider_from_spec("cfg:guidance_scale=3,guidance_rescale=0.7")
    assert isinstance(guider, ClassifierFreeGuidance) and (guider.guidance_scale, guider.guidance_rescale) == (3, 0.7)
