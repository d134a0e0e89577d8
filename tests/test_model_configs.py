"""The text UNet presets build the attention they say: diffusers' UNet2DConditionModel reads `attention_head_dim`
as the number of heads (diffusers#2011), so TEXT_HEADS must come out as heads, not as a head width."""

import pytest
from diffusers.models.attention_processor import Attention

from guided_diffusers.training.model_configs import TEXT_HEADS, TEXT_PRESETS, build_text_unet, text_unet_config


@pytest.mark.parametrize("preset", sorted(TEXT_PRESETS))
def test_text_presets_build_the_number_of_attention_heads_they_state(preset):
    unet = build_text_unet(text_unet_config(preset, 8, 16, 1, 384))
    attentions = [module for module in unet.modules() if isinstance(module, Attention)]
    assert attentions, "every text preset cross-attends to the token states"
    assert {attention.heads for attention in attentions} == {TEXT_HEADS[preset]}
