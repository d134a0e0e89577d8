"""Tiny model folders shaped like the shipped ones, for the app tests."""

import torch
from diffusers import UNet2DModel

from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.model_card import write_model_card
from guided_diffusers.training.model_configs import classifier_config


def tiny_mnist_unet(seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip


def write_tiny_model(folder, num_train_timesteps=50):
    """A tiny random class-conditional pipeline with every optional part of the shipped ones: a noise-aware
    classifier, a weak UNet (autoguidance) and a clean classifier (universal guidance)."""
    unet = tiny_mnist_unet(0)
    scheduler = GuidedDDPMScheduler(num_train_timesteps=num_train_timesteps)
    classifier = NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean", schedule_of(scheduler.config)))
    clean = NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean"))
    pipe = GuidedDiffusionPipeline(unet, scheduler, classifier=classifier, null_class_label=10,
                                   class_names=[str(d) for d in range(10)], weak_unet=tiny_mnist_unet(1),
                                   clean_classifier=clean)  # fmt: skip
    pipe.save_pretrained(folder)
    write_model_card(folder, title="tiny", metadata={"datasets": ["mnist"], "library_name": "diffusers"},
                     sections={"Model": "A tiny random model for tests."})  # fmt: skip
    return folder


def write_tiny_latent_model(folder):
    """A tiny random latent-diffusion pipeline: a 1x32x32 <-> 4x16x16 AutoencoderKL and a UNet on its latents."""
    from diffusers import AutoencoderKL

    from guided_diffusers.training.model_configs import vae_config

    torch.manual_seed(0)
    vae = AutoencoderKL(**vae_config("tiny", 32, 1))
    unet = UNet2DModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip
    pipe = GuidedDiffusionPipeline(unet, GuidedDDPMScheduler(num_train_timesteps=50, clip_sample=False),
                                   null_class_label=10, class_names=[str(d) for d in range(10)], vae=vae)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def write_tiny_text_model(folder):
    """A tiny random text-to-image pipeline on the real MiniLM encoder (which it does not copy)."""
    from guided_diffusers.pipelines import TextToImagePipeline
    from guided_diffusers.pipelines.text_encoding import load_text_encoder
    from guided_diffusers.schedulers import GuidedDDIMScheduler
    from guided_diffusers.training.model_configs import build_text_unet, text_unet_config

    torch.manual_seed(0)
    tokenizer, encoder = load_text_encoder()
    unet = build_text_unet(text_unet_config("tiny", 28, 56, 1, 384))
    TextToImagePipeline(tokenizer, encoder, unet, GuidedDDIMScheduler(num_train_timesteps=50)).save_pretrained(folder)
    return folder


def write_tiny_cascade_model(folder):
    """A tiny random cascade: a class-conditional 14x14 base and a 14 -> 28 super-resolution stage."""
    from guided_diffusers.pipelines import CascadePipeline
    from guided_diffusers.training.model_configs import build_unet, super_resolution_unet_config, unet_config

    torch.manual_seed(0)
    scheduler = GuidedDDPMScheduler(num_train_timesteps=50)
    CascadePipeline(build_unet(unet_config("tiny", 14, 1, num_classes=10)), scheduler,
                    build_unet(super_resolution_unet_config("tiny", 28, 1)), scheduler, null_class_label=10,
                    class_names=[str(d) for d in range(10)]).save_pretrained(folder)  # fmt: skip
    write_model_card(folder, title="tiny cascade", metadata={"datasets": ["mnist"], "library_name": "diffusers"},
                     sections={"Model": "A tiny random cascade for tests."})  # fmt: skip
    return folder


def launch_app(root):
    """The app on a free localhost port with the models under `root`; returns (demo, url)."""
    import socket
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import app

    from space.layout import build_demo
    from space.models import load_models

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo(load_models(str(root)))
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def add_tiny_clip(folder):
    """A pipeline folder given a tiny random noise-aware CLIP on its UNet's inputs (`clip_model/`), as
    training/add_clip_model.py gives the shipped ones a trained one."""
    from guided_diffusers.models import NoiseAwareCLIP
    from guided_diffusers.pipelines.loading import pipeline_class
    from guided_diffusers.pipelines.text_encoding import DEFAULT_TEXT_ENCODER
    from guided_diffusers.training.model_configs import clip_config

    pipe = pipeline_class(str(folder)).from_pretrained(folder)
    config = pipe.unet.config
    height, width = config.sample_size if isinstance(config.sample_size, (list, tuple)) else (config.sample_size,) * 2
    torch.manual_seed(2)
    clip = NoiseAwareCLIP(**clip_config("tiny", height, width, config.in_channels, 384,
                                        noise_schedule=schedule_of(pipe.scheduler.config),
                                        text_encoder_id=DEFAULT_TEXT_ENCODER, max_length=16))  # fmt: skip
    pipe.register_modules(clip_model=clip)
    pipe.save_pretrained(folder)
    return folder
