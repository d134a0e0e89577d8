"""The noise-aware CLIP (GLIDE): its contrastive loss on hand-made embeddings, the towers, save/load and refusals."""

import math

import pytest
import torch
import torch.nn.functional as F

from guided_diffusers.models import NoiseAwareClassifier, NoiseAwareCLIP, contrastive_loss
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.models.noise_aware_classifier import schedule_of
from guided_diffusers.training.captions import NO_ITEM, content_ids, retrieval_candidates
from guided_diffusers.training.model_configs import CLIP_PRESETS

TINY = dict(CLIP_PRESETS["tiny"], text_hidden_size=12)


def tiny_clip(**overrides) -> NoiseAwareCLIP:
    torch.manual_seed(0)
    return NoiseAwareCLIP(**{**TINY, "sample_size": (8, 16), **overrides}).eval()


def test_contrastive_loss_is_clips_symmetric_cross_entropy_when_contents_differ():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(0)) * 3
    diagonal = torch.arange(5)
    expected = (F.cross_entropy(logits, diagonal) + F.cross_entropy(logits.T, diagonal)) / 2
    assert torch.allclose(contrastive_loss(logits), expected, atol=1e-6)
    assert torch.allclose(contrastive_loss(logits, torch.tensor([7, 3, 1, 0, 9])), expected, atol=1e-6)


def test_contrastive_loss_counts_captions_of_the_same_content_as_matches():
    # two images of a 7 and one of a 2, unit embeddings: each 7 matches both 7-captions equally
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    logits = 10 * image @ image.T
    content = torch.tensor([7, 7, 2])
    # by hand: rows 0 and 1 are [10, 10, 0]: target 1/2 on each 7; row 2 is [0, 0, 10]: target on itself
    log_p_seven = 10 - math.log(2 * math.exp(10) + 1)
    log_p_two = 10 - math.log(math.exp(10) + 2)
    expected = -(2 * log_p_seven + log_p_two) / 3  # the same both ways (symmetric logits)
    assert abs(contrastive_loss(logits, content).item() - expected) < 1e-5
    # CLIP's plain loss would call the other 7 a negative: at least log 2 for each 7
    assert contrastive_loss(logits).item() > 2 * math.log(2) / 3


def test_contrastive_loss_refuses_a_non_square_batch():
    with pytest.raises(ValueError, match="square"):
        contrastive_loss(torch.zeros(3, 4))


def test_embeddings_are_unit_vectors_and_logits_are_their_scaled_cosines():
    model = tiny_clip()
    x, t = torch.randn(3, 1, 8, 16), torch.tensor([0, 50, 999])
    states, mask = torch.randn(4, 6, 12), torch.ones(4, 6)
    output = model(x, t, states, mask)
    assert output.logits_per_image.shape == (3, 4)
    assert torch.allclose(output.image_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(output.text_embeds.norm(dim=-1), torch.ones(4), atol=1e-5)
    scale = math.exp(math.log(1 / 0.07))
    assert torch.allclose(output.logits_per_image, scale * output.image_embeds @ output.text_embeds.T, atol=1e-5)
    own = model.log_similarity(x, t, output.text_embeds[:3])
    assert torch.allclose(own, output.logits_per_image[:3, :3].diagonal(), atol=1e-5)


def test_text_tower_ignores_padding_tokens_and_takes_word_order_from_the_encoder():
    model = tiny_clip()
    states, mask = torch.randn(1, 6, 12), torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded_differently = states.clone()
    padded_differently[:, 4:] = torch.randn(1, 2, 12)
    assert torch.allclose(model.text_embeds(states, mask), model.text_embeds(padded_differently, mask), atol=1e-6)
    # the tower adds no positions of its own: the same token states in another order give the same embedding, so
    # "a 4 to the left of a 9" and "a 9 to the left of a 4" differ only through the frozen encoder's contextual states
    swapped = states.clone()
    swapped[:, [1, 2]] = states[:, [2, 1]]
    assert torch.allclose(model.text_embeds(states, mask), model.text_embeds(swapped, mask), atol=1e-5)


def test_image_tower_reads_the_timestep_and_takes_gradients():
    model = tiny_clip()
    x = torch.randn(2, 1, 8, 16, requires_grad=True)
    text = model.text_embeds(torch.randn(2, 6, 12))
    early, late = model.image_embeds(x, torch.tensor([10, 10])), model.image_embeds(x, torch.tensor([900, 900]))
    assert not torch.allclose(early, late)
    (gradient,) = torch.autograd.grad(model.log_similarity(x, torch.tensor([10, 10]), text).sum(), x)
    assert gradient.shape == x.shape and gradient.abs().sum() > 0


def test_save_and_load_round_trip_in_safetensors(tmp_path):
    schedule = schedule_of(GuidedDDPMScheduler(num_train_timesteps=100).config)
    model = tiny_clip(noise_schedule=schedule, text_encoder_id="some/encoder", max_length=12)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = NoiseAwareCLIP.from_pretrained(tmp_path).eval()
    assert tuple(loaded.config.sample_size) == (8, 16) and loaded.config.text_encoder_id == "some/encoder"
    x, t, states = torch.randn(2, 1, 8, 16), torch.tensor([3, 70]), torch.randn(2, 5, 12)
    assert torch.equal(model(x, t, states).logits_per_image, loaded(x, t, states).logits_per_image)
    torch.save(model.state_dict(), tmp_path / "diffusion_pytorch_model.bin")
    (tmp_path / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="pickle"):
        NoiseAwareCLIP.from_pretrained(tmp_path)


def test_refuses_another_noise_schedule_or_text_encoder():
    schedule = schedule_of(GuidedDDPMScheduler(num_train_timesteps=1000).config)
    model = tiny_clip(noise_schedule=schedule, text_encoder_id="sentence-transformers/all-MiniLM-L6-v2")
    model.check_schedule(GuidedDDPMScheduler(num_train_timesteps=1000).config)
    with pytest.raises(ValueError, match="`clip_model` was trained on another noise schedule"):
        model.check_schedule(GuidedDDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").config)
    with pytest.raises(ValueError, match="token states of 'sentence-transformers/all-MiniLM-L6-v2'"):
        model.check_text_encoder("google/t5-v1_1-small")
    model.check_text_encoder("sentence-transformers/all-MiniLM-L6-v2")
    clean = tiny_clip(noise_schedule=schedule, noise_free=True)  # t = 0 only: any schedule's x_0 is the image
    clean.check_schedule(GuidedDDPMScheduler(num_train_timesteps=10).config)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="text_heads"):
        tiny_clip(text_width=10, text_heads=4)


def test_a_classifier_takes_a_rectangular_input():
    classifier = NoiseAwareClassifier(sample_size=(8, 16), num_classes=3, block_out_channels=(8, 16),
                                      down_block_types=("DownBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
                                      attention_head_dim=8)  # fmt: skip
    assert classifier.pool.position.shape == (4 * 8 + 1, 16)
    assert classifier(torch.randn(2, 1, 8, 16), 5).logits.shape == (2, 3)


def test_retrieval_candidates_cover_every_content_once_per_wording():
    candidates = retrieval_candidates("mnist", "held_out")
    singles = [c for c in candidates if c[2] == NO_ITEM]
    pairs = [c for c in candidates if c[2] != NO_ITEM]
    assert len(singles) == 3 * 10 and len(pairs) == 2 * 100 and len({c[0] for c in candidates}) == len(candidates)
    ids = content_ids(torch.tensor([(a, b) for _, a, b in candidates]))
    assert len(set(ids.tolist())) == 10 + 100  # one id per content: singles and ordered pairs never collide
    assert len(retrieval_candidates("fashion_mnist", "held_out", pairs=False)) == 3 * 10
