"""Tiny random pipelines of other diffusers classes (Stable Diffusion, DeepFloyd IF stage I, DDPM, DDIM), built from configs and saved with the stock
classes, as a user's folder would be: the weights cannot be downloaded here."""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL, DDIMScheduler, DDPMPipeline, DDPMScheduler, IFPipeline, StableDiffusionPipeline,
    UNet2DConditionModel, UNet2DModel,
)  # fmt: skip
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer with no BPE merges: one token per byte (GPT-2's printable byte map), with and without the
    end-of-word mark, and the two special tokens; padded to CLIP's 77 tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(tokens)}, merges=[], model_max_length=77)


def tiny_stable_diffusion(folder: Path) -> Path:
    """A Stable Diffusion folder (CLIP text encoder, 4-channel latent UNet at 8x8, KL VAE to 16x16 RGB, SD's
    scaled-linear DDIM schedule), saved by StableDiffusionPipeline without a safety checker."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=8)  # fmt: skip
    vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=8, sample_size=16)  # fmt: skip
    tokenizer = clip_tokenizer()
    end = len(tokenizer) - 1
    text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=end - 1, eos_token_id=end, pad_token_id=end, hidden_size=32,
                                                intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                                vocab_size=len(tokenizer)))  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def tiny_ddpm(folder: Path, pipeline_class=DDPMPipeline) -> Path:
    """An unconditional pixel-space folder as `google/ddpm-*` are (UNet2DModel with attention, RGB 8x8), saved by
    DDPMPipeline with diffusers' DDPMScheduler, or by DDIMPipeline with its DDIMScheduler (clip_sample on)."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=100) if pipeline_class is DDPMPipeline else DDIMScheduler(num_train_timesteps=100)
    pipeline_class(unet, scheduler).save_pretrained(folder)
    return folder


def tiny_deepfloyd_if(folder: Path) -> Path:
    """A DeepFloyd IF stage I folder: a T5 encoder (case-sensitive character vocabulary, so that IF's lower-casing
    of prompts matters), a pixel-space UNet with learned variance (6 output channels for RGB) that projects the T5
    states (`encoder_hid_dim`) and pools them into its time embedding, and IF's DDPM (squared-cosine schedule,
    learned_range variance, dynamic thresholding at p = 0.95 capped at 1.5), saved by IFPipeline."""
    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,.\u2581"
    tokenizer = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *((c, -1.0) for c in letters)],
                            extra_ids=0)  # fmt: skip
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                           num_heads=2, decoder_start_token_id=0))  # fmt: skip
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=3,
                                out_channels=6, down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                                up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                                mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=8, encoder_hid_dim=16,
                                encoder_hid_dim_type="text_proj", addition_embed_type="text",
                                addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift",
                                act_fn="gelu")  # fmt: skip
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
                              sample_max_value=1.5, dynamic_thresholding_ratio=0.95, clip_sample=True)  # fmt: skip
    IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, safety_checker=None,
               feature_extractor=None, watermarker=None, requires_safety_checker=False).save_pretrained(folder)
    return folder
