"""training/add_weak_unet.py: a weak model added to a shipped pipeline folder loads with it, guides, is told in the
card once, and a weak model for another schedule or shape is refused before the folder is touched."""

import json

import pytest
import torch
from diffusers import UNet2DModel

from script_runner import run_script
from test_assemble_checkpoint import fake_run

from guided_diffusers.guiders import WeakModelGuidance
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.model_card import read_model_card, write_model_card

SCRIPT = "training/add_weak_unet.py"


def tiny_unet(seed, channels=(8, 16)):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=channels,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip


def shipped_folder(folder):
    """A shipped pipeline folder as add_<component>.py finds it: a class-conditional pipeline and its card."""
    GuidedDiffusionPipeline(tiny_unet(0), GuidedDDPMScheduler(num_train_timesteps=50), null_class_label=10).save_pretrained(folder)
    write_model_card(folder, title="shipped", metadata={"datasets": ["mnist"], "tags": ["guided-diffusers"]},
                     sections={"Model": "the good model", "Storage": "float16"})  # fmt: skip
    return folder


@pytest.fixture()
def folders(tmp_path):
    shipped = shipped_folder(tmp_path / "shipped")
    weak = GuidedDiffusionPipeline(tiny_unet(1, (4, 8)), GuidedDDPMScheduler(num_train_timesteps=50), null_class_label=10)
    fake_run(tmp_path / "weak", weak, "weak", {"Samples": "grid"})
    return shipped, tmp_path / "weak"


def test_the_weak_model_joins_the_folder_loads_with_it_and_is_told_once(folders):
    shipped, weak = folders
    before = (shipped / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    for _ in range(2):  # re-running replaces, never duplicates
        run_script(SCRIPT, "--pipeline", shipped, "--weak_unet_run", weak, "--fp16", "--check_steps", "2")
    pipe = GuidedDiffusionPipeline.from_pretrained(shipped)
    assert isinstance(pipe.weak_unet, UNet2DModel) and list(pipe.weak_unet.config.block_out_channels) == [4, 8]
    assert json.loads((shipped / "model_index.json").read_text())["weak_unet"] == ["diffusers", "UNet2DModel"]
    assert (shipped / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    from safetensors import safe_open

    with safe_open(shipped / "weak_unet" / "diffusion_pytorch_model.safetensors", "pt") as stored:
        assert all(stored.get_tensor(key).dtype == torch.float16 for key in stored.keys())
    metadata, body = read_model_card(shipped)
    assert body.count("## Weak model (autoguidance)") == 1 and "weak command" in body and "autoguidance" in metadata["tags"]
    assert body.index("## Weak model") < body.index("## Storage") and "max abs pixel difference" in body
    out = pipe(batch_size=2, class_labels=[1, 2], guider=WeakModelGuidance(guidance_scale=2.0), num_inference_steps=2,
               output_type="pt")  # fmt: skip
    assert out.evaluations["weak_unet"] == 2 and torch.isfinite(out.images).all()


def test_a_weak_model_of_another_schedule_or_shape_is_refused_and_the_folder_left_alone(folders, tmp_path):
    shipped, weak = folders
    index = (shipped / "model_index.json").read_text()
    other = GuidedDiffusionPipeline(tiny_unet(1), GuidedDDPMScheduler(num_train_timesteps=100), null_class_label=10)
    fake_run(tmp_path / "other-schedule", other, "other", {})
    result = run_script(SCRIPT, "--pipeline", shipped, "--weak_unet_run", tmp_path / "other-schedule", check=False)
    assert result.returncode != 0 and "num_train_timesteps" in result.stderr
    unconditional = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                                down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)  # fmt: skip
    fake_run(tmp_path / "unconditional", GuidedDiffusionPipeline(unconditional, GuidedDDPMScheduler(num_train_timesteps=50)),
             "unconditional", {})  # fmt: skip
    result = run_script(SCRIPT, "--pipeline", shipped, "--weak_unet_run", tmp_path / "unconditional", check=False)
    assert result.returncode != 0 and "`weak_unet` must match the UNet's num_class_embeds" in result.stderr
    result = run_script(SCRIPT, "--pipeline", shipped, "--weak_unet_run", tmp_path / "nowhere", check=False)
    assert result.returncode != 0 and "--weak_unet_run" in result.stderr and "not a finished" in result.stderr
    assert (shipped / "model_index.json").read_text() == index and not (shipped / "weak_unet").exists()
