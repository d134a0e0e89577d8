"""training/evaluate.py end to end on tiny random models and a tiny N."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from diffusers import UNet2DModel

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.evaluation.sweeps import check_steps, generate, sampling_device
from guided_diffusers.training.evaluate import front_styles, main, nondominated
from guided_diffusers.training.model_configs import classifier_config

SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "evaluate.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip
    GuidedDiffusionPipeline(unet, GuidedDDPMScheduler(), null_class_label=10).save_pretrained(root / "pipeline")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(root / "eval-classifier")
    return root


def test_evaluate_writes_json_markdown_and_plots_with_the_real_data_floor(tmp_path, models):
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--pipeline", str(models / "pipeline"), "--eval_classifier",
         str(models / "eval-classifier"), "--num_samples", "30", "--batch_size", "15", "--samplers", "ddim", "dpm++",
         "--num_inference_steps", "2", "--guidance_scales", "1", "3", "--output_dir", str(out)],
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert len(report["rows"]) == 4  # 2 samplers x 2 guidance scales
    floor = report["real_data_floor"]
    for row in report["rows"]:
        assert {"fd_own", "fd_efficientnet", "accuracy", "precision", "recall", "diversity"} <= set(row)
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and row["fd_own"] >= 0
        assert row["fd_efficientnet"] > floor["fd_efficientnet"]  # an untrained UNet is far from real digits
    table = (out / "results.md").read_text()
    assert "real data (train vs test)" in table and table.count("| ddim |") == 2 and "FD (EfficientNet-Lite0)" in table
    assert (out / "sweep_guidance_scale.png").is_file() and not (out / "sweep_num_inference_steps.png").exists()
    # reproducible from the card: the exact command, and FD as a multiple of the floor at the same N
    assert report["command"].startswith("python training/evaluate.py --pipeline") and report["command"] in table
    assert report["arguments"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # the default
    ratio = report["rows"][0]["fd_own"] / floor["fd_own"]
    assert "FD (own) / floor" in table and f" {ratio:.3g} |" in table.splitlines()[-4]
    # one grid per setting, a row of (up to) 10 samples per class: 30 samples = 3 per class, 10 rows of 28 + padding
    for index in range(4):
        grid = Image.open(out / f"samples_{index}.png")
        assert grid.size == (3 * 29 + 1, 10 * 29 + 1)


def test_too_few_samples_is_refused(tmp_path, models):
    result = subprocess.run([sys.executable, SCRIPT, "--pipeline", str(models / "pipeline"), "--eval_classifier",
                             str(models / "eval-classifier"), "--num_samples", "1", "--output_dir", str(tmp_path)],
                            env=ENV, capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and "--num_samples must be at least 2" in result.stderr


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta", "mps:0"])
def test_a_device_that_is_not_cpu_or_cuda_is_refused(name):
    with pytest.raises(ValueError, match="--device must be cpu, cuda or cuda:<index>"):
        sampling_device(name)


def test_a_cuda_device_that_is_not_here_is_refused_before_any_work():
    assert sampling_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no such CUDA device here"):
        sampling_device(f"cuda:{torch.cuda.device_count()}")  # one past the last


def test_each_sampler_starts_from_the_pipelines_own_scheduler_whatever_ran_before(models):
    pipe = GuidedDiffusionPipeline.from_pretrained(models / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    loaded = pipe.scheduler

    def dpm_images():
        setting = dict(sampler="dpm++", num_inference_steps=4, guidance_scale=1.0, classifier_scale=0.0,
                       thresholding="none", eta=0.0)  # fmt: skip
        return generate(pipe, setting, num_samples=4, batch_size=4, seed=0)[0]

    first = dpm_images()
    assert pipe.scheduler is loaded
    generate(pipe, dict(sampler="dpm2m", num_inference_steps=2, guidance_scale=1.0, classifier_scale=0.0,
                        thresholding="none", eta=0.0), num_samples=2, batch_size=2, seed=1)  # fmt: skip
    assert pipe.scheduler is loaded and torch.equal(dpm_images(), first)


def test_a_step_count_a_sampler_cannot_take_is_refused_before_the_sweep_starts(models):
    """A 1,000-step sweep runs for hours; DPM-Solver cannot take 1,000 of 1,000 training steps, and must say so first."""
    pipe = GuidedDiffusionPipeline.from_pretrained(models / "pipeline")
    setting = dict(guidance_scale=1.0, classifier_scale=0.0, thresholding="none", eta=0.0)
    check_steps(pipe, [dict(setting, sampler=name, num_inference_steps=1000) for name in ("ddpm", "ddim", "diffusers-ddim")])
    check_steps(pipe, [dict(setting, sampler=name, num_inference_steps=999) for name in ("dpm2m", "dpm++")])
    for name in ("dpm2m", "dpm++"):
        with pytest.raises(ValueError, match=re.escape(f"sampler '{name}': `num_inference_steps`")):
            check_steps(pipe, [dict(setting, sampler="ddim", num_inference_steps=1000),
                               dict(setting, sampler=name, num_inference_steps=1000)])  # fmt: skip


def test_a_resumed_sweep_reuses_the_sample_batches_and_reports_the_same_numbers(tmp_path, models):
    argv = ["--pipeline", str(models / "pipeline"), "--eval_classifier", str(models / "eval-classifier"),
            "--num_samples", "10", "--batch_size", "5", "--num_inference_steps", "2", "--no_efficientnet",
            "--output_dir", str(tmp_path)]  # fmt: skip
    main(argv)
    first = json.loads((tmp_path / "results.json").read_text())["rows"]
    (batches,) = [folder for folder in (tmp_path / "samples").iterdir()]  # one setting, two batches of 5
    assert len(list(batches.glob("batch-*.safetensors"))) == 2
    (batches / "batch-000005-5.safetensors").unlink()  # interrupted during the second batch
    kept = (batches / "batch-000000-5.safetensors").stat().st_mtime_ns
    main([*argv, "--resume"])
    timeless = lambda rows: [{k: v for k, v in row.items() if k != "seconds_per_image"} for row in rows]  # noqa: E731
    assert timeless(json.loads((tmp_path / "results.json").read_text())["rows"]) == timeless(first)
    assert (batches / "batch-000000-5.safetensors").stat().st_mtime_ns == kept  # read, not sampled again
    assert (batches / "batch-000005-5.safetensors").is_file()


def test_a_sweep_of_guidance_methods_reports_each_methods_cost_and_draws_its_front(tmp_path, models):
    specs = ["cfg:guidance_scale=3", "apg:guidance_scale=3,eta=0", "cfg++:guidance_scale=0.5", "cfg:guidance_scale=1"]
    main(["--pipeline", str(models / "pipeline"), "--eval_classifier", str(models / "eval-classifier"),
          "--num_samples", "10", "--batch_size", "5", "--samplers", "ddim", "--num_inference_steps", "3",
          "--no_efficientnet", "--guiders", *specs, "--output_dir", str(tmp_path)])  # fmt: skip
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["guider"] for row in rows] == specs
    assert [row["unet_per_image"] for row in rows] == [6, 6, 6, 3]  # 3 steps, two halves; w = 1 one half
    assert all(row["seconds_per_image"] > 0 and row["classifier_per_image"] == 0 for row in rows)
    table = (tmp_path / "results.md").read_text()
    assert "UNet evals / image" in table and "| apg:guidance_scale=3,eta=0 |" in table
    assert "best point at accuracy >=" in table and "At equal cost" in table  # each method's best, then per cost
    assert (tmp_path / "fronts.png").is_file()


@pytest.mark.parametrize(
    "extra,message",
    [(["--guiders", "apg:guidance=3"], "is not key=value with a key of AdaptiveProjectedGuidance"),
     (["--guiders", "nonsense"], "Unknown guider 'nonsense'"),
     (["--guiders", "cfg", "--guidance_scales", "3"], "Give either --guiders or --guidance_scales"),
     (["--guiders", "cfg++", "--samplers", "ddim", "ddpm"], "sampler 'ddpm': CFGPlusPlus is CFG\\+\\+'s DDIM update")],
)  # fmt: skip
def test_a_bad_guider_spec_is_refused_before_any_work(tmp_path, models, extra, message):
    with pytest.raises(ValueError, match=message):
        main(["--pipeline", str(models / "pipeline"), "--eval_classifier", str(models / "eval-classifier"),
              "--output_dir", str(tmp_path), *extra])  # fmt: skip
    assert not (tmp_path / "samples").exists()


def test_a_sweep_run_in_parts_combines_into_the_table_of_one_run(tmp_path, models):
    common = ["--pipeline", str(models / "pipeline"), "--eval_classifier", str(models / "eval-classifier"),
              "--num_samples", "10", "--batch_size", "5", "--samplers", "ddim", "--num_inference_steps", "2",
              "--no_efficientnet"]  # fmt: skip
    specs = ["cfg:guidance_scale=3", "apg:guidance_scale=3,eta=0", "cfg:guidance_scale=1"]
    main([*common, "--guiders", *specs, "--output_dir", str(tmp_path / "whole")])
    main([*common, "--guiders", *specs[:2], "--output_dir", str(tmp_path / "part-1")])
    main([*common, "--guiders", specs[2], "--output_dir", str(tmp_path / "part-2")])
    parts = [str(tmp_path / "part-1"), str(tmp_path / "part-2")]
    main(["--combine", *parts, "--output_dir", str(tmp_path / "combined")])
    timeless = lambda rows: [{k: v for k, v in row.items() if k != "seconds_per_image"} for row in rows]  # noqa: E731
    whole, combined = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("whole", "combined"))
    assert timeless(combined["rows"]) == timeless(whole["rows"])  # same seeds per setting, whichever run drew it
    assert combined["real_data_floor"] == whole["real_data_floor"]
    assert [source["run_dir"] for source in combined["sources"]] == parts
    table = (tmp_path / "combined" / "results.md").read_text()
    assert "Combined from these runs" in table and "--combine" in table and "| cfg:guidance_scale=1 |" in table
    for index in range(3):  # the parts' grids, renumbered after the rows
        assert (tmp_path / "combined" / f"samples_{index}.png").read_bytes() == \
            (tmp_path / "whole" / f"samples_{index}.png").read_bytes()  # fmt: skip
    assert (tmp_path / "combined" / "fronts.png").is_file()
    # a combination combines again, e.g. with a later part
    main(["--combine", str(tmp_path / "combined"), "--output_dir", str(tmp_path / "again")])
    assert timeless(json.loads((tmp_path / "again" / "results.json").read_text())["rows"]) == timeless(whole["rows"])


def test_runs_that_cannot_share_a_table_are_refused(tmp_path, models):
    common = ["--pipeline", str(models / "pipeline"), "--eval_classifier", str(models / "eval-classifier"),
              "--batch_size", "5", "--num_inference_steps", "2", "--no_efficientnet", "--guiders", "cfg"]  # fmt: skip
    main([*common, "--num_samples", "10", "--output_dir", str(tmp_path / "a")])
    main([*common, "--num_samples", "10", "--output_dir", str(tmp_path / "b")])
    main([*common, "--num_samples", "15", "--output_dir", str(tmp_path / "c")])
    out = ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="differs from .* in num_samples, real_data_floor"):
        main(["--combine", str(tmp_path / "a"), str(tmp_path / "c"), *out])
    with pytest.raises(SystemExit, match="is a row of both"):
        main(["--combine", str(tmp_path / "a"), str(tmp_path / "b"), *out])
    with pytest.raises(SystemExit, match="has no results.json"):
        main(["--combine", str(tmp_path / "a"), str(tmp_path / "missing"), *out])
    with pytest.raises(SystemExit):  # argparse's error: the combination would overwrite a run's results
        main(["--combine", str(tmp_path / "a"), "--output_dir", str(tmp_path / "a")])
    assert not (tmp_path / "out").exists()


def test_floors_equal_up_to_float_rounding_are_the_same_floor():
    from guided_diffusers.evaluation.reports import same_floor

    floor = {"fd_own": 0.16870024968435057, "accuracy": 0.904, "count": 1000}
    assert same_floor(floor, {**floor, "fd_own": 0.16870024378169868})  # measured: two thread counts, the same data
    assert not same_floor(floor, {**floor, "fd_own": 0.1688}) and not same_floor(floor, {**floor, "count": 999})
    assert not same_floor(floor, {"fd_own": 0.16870024968435057})


def test_a_fronts_line_joins_only_the_points_no_other_point_beats():
    # (FD ratio, accuracy): (2, .99) beats (3, .98); (1, .9) and (4, 1.0) trade one for the other
    fidelity = [(3.0, 0.98), (2.0, 0.99), (1.0, 0.90), (4.0, 1.0), (2.0, 0.99)]
    assert nondominated(fidelity, lower_x_is_better=True) == [(1.0, 0.90), (2.0, 0.99), (4.0, 1.0)]
    # (recall, precision): higher is better in both
    coverage = [(0.7, 0.93), (0.8, 0.94), (0.9, 0.91), (0.85, 0.90)]
    assert nondominated(coverage, lower_x_is_better=False) == [(0.8, 0.94), (0.9, 0.91)]


def test_every_front_has_a_style_of_its_own():
    curves = [(f"method-{i}", "dpm2m", 20) for i in range(30)]  # more methods than colours or markers
    styles = front_styles(curves)
    pairs = {(str(style["color"]), style["marker"]) for style in styles.values()}
    assert len(pairs) == 30


def test_the_floor_spread_draws_the_floors_that_sweeps_divide_by(tmp_path, models):
    from guided_diffusers.training.evaluate_floor import main as floor_spread

    classifier = ["--eval_classifier", str(models / "eval-classifier"), "--num_samples", "20", "--no_efficientnet"]
    floor_spread([*classifier, "--seeds", "0", "3", "--output_dir", str(tmp_path / "floors")])
    report = json.loads((tmp_path / "floors" / "results.json").read_text())
    main(["--pipeline", str(models / "pipeline"), *classifier, "--batch_size", "20", "--num_inference_steps", "1",
          "--seed", "3", "--output_dir", str(tmp_path / "sweep")])  # fmt: skip
    sweep_floor = json.loads((tmp_path / "sweep" / "results.json").read_text())["real_data_floor"]
    assert [row["seed"] for row in report["rows"]] == [0, 3]
    assert report["rows"][1]["fd_own"] == pytest.approx(sweep_floor["fd_own"], rel=1e-9)
    assert report["rows"][0]["fd_own"] != report["rows"][1]["fd_own"]  # another draw, another floor
    values = [row["recall"] for row in report["rows"]]
    assert report["summary"]["min"]["recall"] == min(values) and report["summary"]["max"]["recall"] == max(values)
    assert report["summary"]["mean"]["recall"] == pytest.approx(sum(values) / 2)
    assert "| **sd** |" in (tmp_path / "floors" / "results.md").read_text()
    with pytest.raises(SystemExit):
        floor_spread([*classifier, "--seeds", "1", "1", "--output_dir", str(tmp_path / "refused")])
