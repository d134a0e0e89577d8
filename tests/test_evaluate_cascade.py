"""training/evaluate_cascade.py end to end on tiny random models and a tiny N: generation rows for the cascade, a
swapped-in stage and a single-stage model, with their costs; super-resolution of real held-out images against
bicubic and bilinear upsampling, with PSNR recomputed here; resuming from the cached batches."""

import json

import pytest
import torch
import torch.nn.functional as F

from guided_diffusers.evaluation.metrics import psnr
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import CascadePipeline, GuidedDiffusionPipeline, SuperResolutionPipeline
from guided_diffusers.pipelines.noise_augmentation import area_downsample, upsample
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.evaluate_cascade import held_out_split, parse_args
from guided_diffusers.training.model_configs import build_unet, classifier_config, super_resolution_unet_config, unet_config
from script_runner import run_script


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    schedule = GuidedDDPMScheduler()
    base = build_unet(unet_config("tiny", 14, 1, num_classes=10))
    stage = build_unet(super_resolution_unet_config("tiny", 28, 1))
    CascadePipeline(base, schedule, stage, schedule, null_class_label=10).save_pretrained(root / "cascade")
    other = build_unet(super_resolution_unet_config("tiny", 28, 1))
    SuperResolutionPipeline(other, schedule).save_pretrained(root / "no-augmentation")
    conditioned = build_unet(super_resolution_unet_config("tiny", 28, 1, num_classes=10))
    SuperResolutionPipeline(conditioned, schedule, null_class_label=10).save_pretrained(root / "class-conditional")
    single = build_unet(unet_config("tiny", 28, 1, num_classes=10))
    GuidedDiffusionPipeline(single, schedule, null_class_label=10).save_pretrained(root / "single")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(root / "eval-classifier")
    return root


def arguments(models, out, *extra):
    return ["--cascade", models / "cascade", "--eval_classifier", models / "eval-classifier", "--num_samples", "20",
            "--batch_size", "10", "--num_inference_steps", "2", "--super_resolution_steps", "3", "--no_efficientnet",
            "--augmentation_levels", "0", "0.5", "--output_dir", out, *extra]  # fmt: skip


def test_the_cascade_report_has_generation_and_real_super_resolution_rows(tmp_path, models):
    out = tmp_path / "eval"
    run_script("training/evaluate_cascade.py", *arguments(models, out, "--super_resolution", models / "no-augmentation",
                                                          "--single_stage", models / "single", "--guidance_scales", "1", "3"))  # fmt: skip
    report = json.loads((out / "results.json").read_text())
    generation = report["generation"]
    # 2 stages x 2 scales x 2 levels, and the single stage at each scale (no level)
    assert [(r["pipeline"], r["guidance_scale"], r["augmentation_level"]) for r in generation][:2] == [
        ("cascade", 1.0, 0.0), ("cascade", 1.0, 0.5)]  # fmt: skip
    assert len(generation) == 10 and sum(r["pipeline"] == "single-stage" for r in generation) == 2
    swapped = [r for r in generation if r["pipeline"] == "cascade, SR no-augmentation"]
    assert len(swapped) == 4
    for row in generation:
        cascade = row["pipeline"] != "single-stage"
        assert row["unet_per_image"] == 2 * (2 if row["guidance_scale"] != 1 else 1)  # CFG: two predictions a step
        assert row.get("super_resolution_unet_per_image") == (3 if cascade else None)
    methods = [r["method"] for r in report["real_super_resolution"]]
    assert methods == ["bicubic", "bilinear", "SR @ 0.0", "SR @ 0.5", "SR, SR no-augmentation @ 0.0",
                       "SR, SR no-augmentation @ 0.5"]  # fmt: skip
    # PSNR of the baselines, recomputed from the same held-out images
    args = parse_args([str(a) for a in arguments(models, out)])
    _, _, held_out, _ = held_out_split(args, 28, 1)
    low = area_downsample(held_out, 14)
    bilinear, bicubic = report["real_super_resolution"][1], report["real_super_resolution"][0]
    assert bilinear["psnr"] == pytest.approx(psnr(upsample(low, 28), held_out), rel=1e-9)
    expected = psnr(F.interpolate(low, size=(28, 28), mode="bicubic", align_corners=False).clamp(-1, 1), held_out)
    assert bicubic["psnr"] == pytest.approx(expected, rel=1e-9)
    table = (out / "results.md").read_text()
    assert "### Generation" in table and "the originals (real held-out images)" in table
    assert (out / "augmentation_levels.png").is_file() and (out / "real_super_resolution.png").is_file()
    # resumed: every batch comes from the cache, so the report is the same
    again = tmp_path / "again.json"
    (out / "results.json").rename(again)
    run_script("training/evaluate_cascade.py", *arguments(models, out, "--super_resolution", models / "no-augmentation",
                                                          "--single_stage", models / "single", "--guidance_scales", "1", "3",
                                                          "--resume"))  # fmt: skip
    resumed = json.loads((out / "results.json").read_text())
    for first, second in zip(json.loads(again.read_text())["real_super_resolution"], resumed["real_super_resolution"]):
        assert first["psnr"] == second["psnr"] and first["fd_own"] == second["fd_own"]


def test_the_single_stage_also_runs_at_the_step_counts_asked_for(tmp_path, models):
    out = tmp_path / "eval"
    run_script("training/evaluate_cascade.py", *arguments(models, out, "--single_stage", models / "single",
                                                          "--single_stage_steps", "2", "5", "--guidance_scales", "3"))  # fmt: skip
    single = [r for r in json.loads((out / "results.json").read_text())["generation"] if r["pipeline"].startswith("single")]
    # the base's step count keeps the plain label (so earlier runs' cached rows still match); others say theirs
    assert [(r["pipeline"], r["unet_per_image"]) for r in single] == [("single-stage", 4), ("single-stage, 5 steps", 10)]


def test_the_judge_never_sees_the_images_it_super_resolves(models, tmp_path):
    args = parse_args([str(a) for a in arguments(models, tmp_path)])
    reference, _, held_out, _ = held_out_split(args, 28, 1)
    pairs = (reference[:, None] == held_out[None]).flatten(2).all(2)
    assert not pairs.any()


@pytest.mark.parametrize("extra, message", [(["--augmentation_levels", "1.5"], "--augmentation_levels must lie in"),
                                            (["--num_samples", "1"], "--num_samples must be at least 2"),
                                            (["--single_stage_steps", "0"], "the step counts at least 1")])  # fmt: skip
def test_bad_arguments_are_refused(models, tmp_path, extra, message):
    result = run_script("training/evaluate_cascade.py", *arguments(models, tmp_path, *extra), check=False)
    assert result.returncode != 0 and message in result.stderr


def test_a_class_conditioned_stage_is_measured_at_each_of_its_cfg_scales(tmp_path, models):
    out = tmp_path / "eval"
    run_script("training/evaluate_cascade.py", *arguments(models, out, "--super_resolution", models / "class-conditional",
                                                          "--super_resolution_guidance_scales", "1", "3"))  # fmt: skip
    report = json.loads((out / "results.json").read_text())
    rows = [(r["pipeline"], r["augmentation_level"], r["super_resolution_guidance_scale"], r["super_resolution_unet_per_image"])
            for r in report["generation"]]  # fmt: skip
    # the plain stage once per level; the class-conditioned one per level and stage scale (CFG: twice the evaluations)
    assert rows == [("cascade", 0.0, None, 3), ("cascade", 0.5, None, 3),
                    ("cascade, SR class-conditional", 0.0, 1.0, 3), ("cascade, SR class-conditional", 0.0, 3.0, 6),
                    ("cascade, SR class-conditional", 0.5, 1.0, 3), ("cascade, SR class-conditional", 0.5, 3.0, 6)]  # fmt: skip
    methods = [r["method"] for r in report["real_super_resolution"]]
    assert methods[2:] == ["SR @ 0.0", "SR @ 0.5", "SR, SR class-conditional, CFG 1 @ 0.0",
                           "SR, SR class-conditional, CFG 3 @ 0.0", "SR, SR class-conditional, CFG 1 @ 0.5",
                           "SR, SR class-conditional, CFG 3 @ 0.5"]  # fmt: skip
    for line in (out / "results.md").read_text().splitlines():  # every table row has its header's columns
        if line.startswith("| pipeline"):
            columns = line.count("|")
        elif line.startswith("| cascade") or line.startswith("| real data"):
            assert line.count("|") == columns, line
    told = report["real_super_resolution"][4:6]
    assert told[0]["psnr"] != told[1]["psnr"]  # the stage's guidance changes its output
