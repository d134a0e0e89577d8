"""scripts/evaluate_shipped_models.sh: each sweep runs the command its header promises. PYTHON points at a stand-in
interpreter that prints the command line it was given, so nothing is sampled."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "evaluate_shipped_models.sh"


@pytest.fixture
def run(tmp_path):
    echo = tmp_path / "python"
    echo.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)

    def run(*args, **env):
        result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                                env={**os.environ, "PYTHON": str(echo), **env})  # fmt: skip
        return result.returncode, result.stdout.splitlines(), result.stderr

    return run


def value(argv: list[str], flag: str) -> list[str]:
    """The values after `flag`, up to the next flag."""
    start = argv.index(flag) + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return argv[start:end]


def test_cfg_sweep_of_a_pixel_model_uses_static_clipping_and_the_given_scales(run):
    code, argv, _ = run("fashion_mnist", "cfg", GUIDANCE_SCALES="0 1 2 3 5")
    assert code == 0 and argv[0] == "training/evaluate.py"
    assert value(argv, "--pipeline") == ["checkpoints/fashion-mnist"]
    assert value(argv, "--eval_classifier") == ["checkpoints/fashion-mnist-eval-classifier"]
    assert value(argv, "--guidance_scales") == ["0", "1", "2", "3", "5"] and value(argv, "--thresholding") == ["static"]
    assert "--resume" in argv  # re-running the line after an interruption continues it
    assert value(argv, "--num_samples") == ["1000"] and value(argv, "--output_dir") == ["eval/fashion-mnist-cfg"]
    assert value(run("mnist", "cfg")[1], "--guidance_scales") == ["0", "1", "3", "5"]  # the default


def test_a_latent_pipeline_is_evaluated_without_thresholding_under_its_own_name(run, tmp_path):
    (tmp_path / "latent" / "vae").mkdir(parents=True)
    code, argv, _ = run("mnist", "cfg", str(tmp_path / "latent"), str(tmp_path / "out"))
    assert code == 0 and value(argv, "--thresholding") == ["none"]
    assert value(argv, "--output_dir") == [str(tmp_path / "out" / "mnist-latent-cfg")]


def test_text_sweeps_default_to_the_text_checkpoint(run):
    code, argv, _ = run("mnist", "text")
    assert code == 0 and argv[0] == "training/evaluate_text_to_image.py"
    assert value(argv, "--pipeline") == ["checkpoints/mnist-text"]
    assert value(argv, "--thresholding") == ["none", "static", "dynamic"]
    assert value(argv, "--output_dir") == ["eval/mnist-text"]  # the shipped model is latent (it has a vae/)
    code, argv, _ = run("mnist", "text-train-prompts")
    assert code == 0 and value(argv, "--prompt_split") == ["train"]


def test_the_text_cascade_and_its_single_stage_comparison_share_prompts_n_and_steps(run):
    code, cascade, _ = run("mnist", "text-cascade")
    assert code == 0 and cascade[0] == "training/evaluate_text_to_image.py"
    assert value(cascade, "--pipeline") == ["runs/mnist-text-cascade"] and value(cascade, "--thresholding") == ["static"]
    assert value(cascade, "--super_resolution_steps") == ["20"] and value(cascade, "--augmentation_level") == ["0.2"]
    assert value(cascade, "--output_dir") == ["eval/mnist-text-cascade"] and "--no_efficientnet" not in cascade
    code, single, _ = run("mnist", "text-one-item", GUIDANCE_SCALES="3")
    assert code == 0 and value(single, "--pipeline") == ["checkpoints/mnist-text"]
    assert value(single, "--thresholding") == ["none"] and value(single, "--guidance_scales") == ["3"]  # latent
    assert value(single, "--output_dir") == ["eval/mnist-text-one-item"]
    for flag in ("--images_per_prompt", "--sampler", "--num_inference_steps", "--one_item_prompts"):
        assert value(cascade, flag) == value(single, flag), flag
    assert value(cascade, "--images_per_prompt") == ["34"]


def test_text_clip_sweep_compares_cfg_clip_guidance_and_both_graded_by_the_clean_clip(run):
    code, argv, _ = run("mnist", "text-clip")
    assert code == 0 and value(argv, "--pipeline") == ["checkpoints/mnist-text"]
    guiders = value(argv, "--guiders")
    assert "cfg:guidance_scale=3" in guiders and "clip:clip_scale=30,prediction=pred_uncond" in guiders
    assert "cfg:guidance_scale=3&clip:clip_scale=30" in guiders and "cfg:guidance_scale=0" in guiders
    assert "--guiding_clip" not in argv
    assert value(argv, "--clip_model") == ["checkpoints/mnist-clip-score"] and value(argv, "--thresholding") == ["none"]
    assert value(argv, "--output_dir") == ["eval/mnist-text-clip"]
    _, argv, _ = run("mnist", "text-clip", METHODS="clip:clip_scale=3", GUIDING_CLIP="runs/g", CLIP_SCORE="runs/c")
    assert value(argv, "--guiders") == ["clip:clip_scale=3"] and value(argv, "--guiding_clip") == ["runs/g"]
    assert value(argv, "--clip_model") == ["runs/c"]


def test_text_thresholding_sweep_sets_static_against_dynamic_at_each_percentile(run, tmp_path):
    code, argv, _ = run("mnist", "text-thresholding", str(tmp_path / "pixel"), "out")
    assert code == 0 and value(argv, "--pipeline") == [str(tmp_path / "pixel")]
    assert value(argv, "--thresholding") == ["static", "dynamic"] and value(argv, "--guidance_scales") == ["10"]
    assert value(argv, "--dynamic_thresholding_ratios") == ["0.5", "0.8", "0.9", "0.95", "0.995"]
    assert value(argv, "--output_dir") == ["out/mnist-pixel-text-thresholding"]  # beside the latent model's
    assert value(run("mnist", "text-thresholding", GUIDANCE_SCALES="10 15")[1], "--guidance_scales") == ["10", "15"]


def test_quality_per_step_takes_its_steps_from_the_environment(run):
    code, argv, _ = run("mnist", "quality-per-step", STEPS="100 250 1000")
    assert code == 0 and argv[0] == "benchmarks/quality_per_step.py"
    assert value(argv, "--steps") == ["100", "250", "1000"]
    assert "--resume" in argv  # re-running the line after an interruption continues it (hours per row at 1,000 steps)
    default = run("mnist", "quality-per-step")[1]
    assert value(default, "--steps") == ["10", "20", "50"] and "--samplers" not in default  # all fourteen
    code, argv, _ = run("mnist", "quality-per-step", STEPS="999", SAMPLERS="dpm2m dpm++")
    assert code == 0 and value(argv, "--samplers") == ["dpm2m", "dpm++"]


def test_samplers_per_call_compares_the_samplers_at_equal_network_calls(run):
    code, argv, _ = run("mnist", "samplers-per-call")
    assert code == 0 and argv[0] == "benchmarks/quality_per_step.py" and "--resume" in argv
    assert value(argv, "--budgets") == ["10", "20", "50", "100"] and "--steps" not in argv
    assert value(argv, "--samplers") == ["ddpm", "ddim", "dpm2m", "dpm2m-karras", "heun", "heun-sigma-min-0.1",
                                         "euler", "sde", "reverse-diffusion", "pc"]
    assert value(argv, "--output_dir") == ["eval/mnist-samplers-per-call"]
    assert value(run("mnist", "samplers-per-call", BUDGETS="10 20")[1], "--budgets") == ["10", "20"]


def test_an_unknown_sweep_or_a_missing_argument_is_refused(run):
    code, argv, stderr = run("mnist", "fid")
    assert code == 2 and not argv and "sweep must be guidance-methods, guidance-methods-ddim, cfg," in stderr and "got fid" in stderr
    code, _, stderr = run("mnist")
    assert code != 0 and "sweep" in stderr


def test_the_cfg_plus_plus_inversion_sweep_sets_cfg_beside_cfg_plus_plus(run):
    code, argv, _ = run("mnist", "inversion-cfg++")
    assert code == 0 and argv[0] == "training/evaluate_inversion.py"
    assert value(argv, "--guidance_scales") == ["0", "3", "5"]
    assert value(argv, "--cfg_plus_plus_scales") == ["0.2", "0.4", "0.6"]
    assert value(argv, "--output_dir") == ["eval/mnist-inversion-cfg++"]


def test_cascade_sweep_compares_with_the_single_stage_model_and_swaps_in_the_ablation_where_it_exists(run, tmp_path):
    code, argv, _ = run("mnist", "cascade", SR_ABLATION=str(tmp_path / "missing"))
    assert code == 0 and argv[0] == "training/evaluate_cascade.py"
    assert value(argv, "--cascade") == ["checkpoints/mnist-cascade"] and value(argv, "--single_stage") == ["checkpoints/mnist"]
    assert value(argv, "--single_stage_steps") == ["20", "6"]  # also at the cascade's FLOPs per image
    assert "--super_resolution" not in argv and value(argv, "--guidance_scales") == ["1", "3"]
    assert value(argv, "--augmentation_levels") == ["0", "0.1", "0.2", "0.4", "0.7"] and "--resume" in argv
    ablation = tmp_path / "ablation"
    ablation.mkdir()
    (ablation / "model_index.json").write_text("{}")
    code, argv, _ = run("fashion_mnist", "cascade", SR_ABLATION=str(ablation))
    assert code == 0 and value(argv, "--super_resolution") == [str(ablation)]
    assert value(argv, "--output_dir") == ["eval/fashion-mnist-cascade"]
    code, argv, _ = run("fashion_mnist", "cascade", "runs/fashion-mnist-cascade", LEVELS="0.2", GUIDANCE_SCALES="1 2 3")
    assert code == 0 and value(argv, "--augmentation_levels") == ["0.2"] and value(argv, "--guidance_scales") == ["1", "2", "3"]
    assert value(argv, "--cascade") == ["runs/fashion-mnist-cascade"] and value(argv, "--single_stage") == ["checkpoints/fashion-mnist"]


def test_guidance_method_sweeps_draw_another_seed_into_their_own_folder(run):
    code, argv, _ = run("mnist", "guidance-methods", METHODS="cfg:guidance_scale=3")
    assert code == 0 and value(argv, "--seed") == ["0"]
    assert value(argv, "--output_dir") == ["eval/mnist-guidance-methods"]
    # the main table's sampler, named once, so that the command recorded in results.md reads as it ran
    assert argv.count("--samplers") == argv.count("--num_inference_steps") == 1
    assert value(argv, "--samplers") == ["dpm2m"] and value(argv, "--num_inference_steps") == ["20"]
    code, argv, _ = run("fashion_mnist", "guidance-methods-ddim", "checkpoints/fashion-mnist", "eval/s", SEED="1",
                        METHODS="cfg:guidance_scale=2 interval:guidance_scale=3.5,sigma_lo=1")  # fmt: skip
    assert code == 0 and value(argv, "--seed") == ["1"] and value(argv, "--samplers") == ["ddim"]
    assert argv.count("--samplers") == 1 and value(argv, "--num_inference_steps") == ["50"]
    assert value(argv, "--guiders") == ["cfg:guidance_scale=2", "interval:guidance_scale=3.5,sigma_lo=1"]
    assert value(argv, "--output_dir") == ["eval/s/fashion-mnist-guidance-methods-ddim-seed1"]
