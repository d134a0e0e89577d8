"""The text UNet presets build what they say: diffusers' UNet2DConditionModel reads `attention_head_dim` as the
number of heads (diffusers#2011), so a preset that meant a head width of 32 once built 32 heads of width 2 and 4."""

import pytest
from diffusers.models.attention_processor import Attention

from guided_diffusers.training.model_configs import TEXT_HEAD_WIDTH, TEXT_PRESETS, build_text_unet, text_unet_config


@pytest.mark.parametrize("preset", sorted(TEXT_PRESETS))
def test_text_presets_build_attention_heads_of_their_stated_width(preset):
    unet = build_text_unet(text_unet_config(preset, 8, 16, 1, 384))
    attentions = [module for module in unet.modules() if isinstance(module, Attention)]
    assert attentions, "every text preset cross-attends to the token states"
    assert {attention.inner_dim // attention.heads for attention in attentions} == {TEXT_HEAD_WIDTH[preset]}
