"""Every benchmark script still runs and prints its table (tiny sizes: this checks that they work, not speed)."""

import json
import subprocess
import sys

import pytest
from app_models import write_tiny_model
from script_runner import ENV, REPO

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.training.model_configs import classifier_config


def bench(script, *args):
    result = subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO / "benchmarks", env=ENV,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("machine: ")  # every benchmark records the machine with its numbers
    return result.stdout


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("scheduler_overhead.py", ["--repeats", "1", "--steps", "2"], "DDIM"),
        ("guidance_cost.py", ["--batch_size", "1", "--steps", "1", "--repeats", "1"], "CFG + classifier"),
        ("pipeline_overhead.py", ["--batch_sizes", "1", "--steps", "2", "--repeats", "1", "--model_config", "tiny"],
         "diffusers DDIMPipeline"),
        ("memory.py", ["--batch_size", "2", "--steps", "1"], "CFG + classifier"),
        ("pixel_vs_latent.py", ["--model_config", "tiny", "--batch_size", "2", "--steps", "1", "--sampling_steps", "1",
                                "--sampling_batch", "1", "--repeats", "1"], "latent (4x8x8)"),
        ("train_throughput.py", ["--model_config", "tiny", "--batch_size", "4", "--steps", "2", "--repeats", "1"], "ratio"),
        ("text_attention_heads.py", ["--model_config", "tiny", "pixel", "--batch_size", "2", "--steps", "1", "--repeats",
                                     "1"], "| pixel, heads of width 32 |"),
    ],
)  # fmt: skip
def test_benchmark_runs_and_prints_its_table(script, args, expected):
    assert expected in bench(script, *args)


def test_quality_per_step_writes_its_table_and_plot(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    out = bench("quality_per_step.py", "--pipeline", model, "--eval_classifier", tmp_path / "judge", "--num_samples", 10,
                "--batch_size", 10, "--steps", 2, "--no_efficientnet", "--output_dir", tmp_path / "out")  # fmt: skip
    assert "ours DPM-Solver++" in out and "diffusers DPM-Solver++" in out and (tmp_path / "out" / "fd_vs_steps.png").is_file()
    chosen = bench("quality_per_step.py", "--pipeline", model, "--eval_classifier", tmp_path / "judge", "--num_samples",
                   10, "--batch_size", 10, "--steps", 2, "--no_efficientnet", "--samplers", "dpm2m", "dpm++",
                   "--output_dir", tmp_path / "two")  # fmt: skip
    rows = json.loads((tmp_path / "two" / "results.json").read_text())["rows"]
    assert [row["sampler"] for row in rows] == ["ours DPM-Solver++ (2M)", "diffusers DPM-Solver++ (2M)"], chosen
    # --resume: a rerun re-uses every sample batch of the first, so it reports the same numbers and sampling time
    again = bench("quality_per_step.py", "--pipeline", model, "--eval_classifier", tmp_path / "judge", "--num_samples",
                  10, "--batch_size", 10, "--steps", 2, "--no_efficientnet", "--samplers", "dpm2m", "dpm++",
                  "--output_dir", tmp_path / "two", "--resume")  # fmt: skip
    assert json.loads((tmp_path / "two" / "results.json").read_text())["rows"] == rows, again
    (tmp_path / "out" / "fd_vs_steps.png").unlink()  # --replot redraws it from results.json alone
    bench("quality_per_step.py", "--replot", "--output_dir", tmp_path / "out")
    assert (tmp_path / "out" / "fd_vs_steps.png").is_file()


def test_quality_per_step_compares_samplers_at_equal_network_calls(tmp_path):
    """--budgets gives each sampler the most steps whose calls fit: Heun 2N - 1, predictor-corrector 2N, DDIM N."""
    model = write_tiny_model(tmp_path / "model")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    bench("quality_per_step.py", "--pipeline", model, "--eval_classifier", tmp_path / "judge", "--num_samples", 10,
          "--batch_size", 10, "--budgets", 5, "--samplers", "heun", "heun-sigma-min-0.1", "pc", "ddim", "--no_efficientnet",
          "--output_dir", tmp_path / "out")  # fmt: skip
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    # a raised sigma_min cannot make one level (sigma_max below it): the search skips that count, not the sampler
    assert [(row["steps"], row["network_calls"], row["budget"]) for row in rows] == [(3, 5, 5), (3, 5, 5), (2, 4, 5),
                                                                                      (5, 5, 5)]
    report = (tmp_path / "out" / "results.md").read_text()
    assert "| ours EDM Heun | 3 | 5 |" in report and "Best within 5 network calls: FD (own classifier): " in report


def test_quality_per_step_combines_runs_of_the_same_setting_only(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    for steps, samplers in [(3, ["dpm2m", "ddim"]), (2, ["ddim"])]:
        bench("quality_per_step.py", "--pipeline", model, "--eval_classifier", tmp_path / "judge", "--num_samples", 10,
              "--batch_size", 10, "--steps", steps, "--no_efficientnet", "--samplers", *samplers,
              "--output_dir", tmp_path / f"steps-{steps}")  # fmt: skip
    runs = [tmp_path / "steps-3", tmp_path / "steps-2"]
    bench("quality_per_step.py", "--combine", *runs, "--output_dir", tmp_path / "all")
    combined = json.loads((tmp_path / "all" / "results.json").read_text())
    rows = {(row["sampler"], row["steps"]): row for run in runs
            for row in json.loads((run / "results.json").read_text())["rows"]}  # fmt: skip
    # every row as measured, ordered by sampler then steps, against the runs' one floor; one plot of them all
    assert [(row["sampler"], row["steps"]) for row in combined["rows"]] == [
        ("ours DDIM eta=0", 2), ("ours DDIM eta=0", 3), ("ours DPM-Solver++ (2M)", 3)]
    assert all(row == rows[row["sampler"], row["steps"]] for row in combined["rows"])
    assert (tmp_path / "all" / "fd_vs_steps.png").is_file() and "steps-2" in (tmp_path / "all" / "results.md").read_text()
    # a combination combines again, with a later run (a budget run in another session): its sources carry over
    bench("quality_per_step.py", "--pipeline", model, "--eval_classifier", tmp_path / "judge", "--num_samples", 10,
          "--batch_size", 10, "--steps", 4, "--no_efficientnet", "--samplers", "ddim", "--output_dir",
          tmp_path / "steps-4")  # fmt: skip
    bench("quality_per_step.py", "--combine", tmp_path / "all", tmp_path / "steps-4", "--output_dir", tmp_path / "again")
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert [(row["sampler"], row["steps"]) for row in again["rows"]] == [
        ("ours DDIM eta=0", 2), ("ours DDIM eta=0", 3), ("ours DDIM eta=0", 4), ("ours DPM-Solver++ (2M)", 3)]
    assert [source["run_dir"] for source in again["sources"]] == [str(run) for run in runs] + [str(tmp_path / "steps-4")]
    # a row run twice, or a run with other seeds (another floor, other samples), cannot share the table
    refused = subprocess.run([sys.executable, "quality_per_step.py", "--combine", *runs, runs[0], "--output_dir",
                              tmp_path / "twice"], cwd=REPO / "benchmarks", env=ENV, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "('ours DPM-Solver++ (2M)', 3) is a row of both" in refused.stderr
    reseeded = json.loads((runs[1] / "results.json").read_text())
    reseeded["command"]["seed"] = 1
    (runs[1] / "results.json").write_text(json.dumps(reseeded))
    refused = subprocess.run([sys.executable, "quality_per_step.py", "--combine", *runs, "--output_dir",
                              tmp_path / "mixed"], cwd=REPO / "benchmarks", env=ENV, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "differs from" in refused.stderr and "seed" in refused.stderr
    assert not (tmp_path / "twice").exists() and not (tmp_path / "mixed").exists()


def test_background_grain_measures_each_row_and_saves_its_grid(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    out = bench("background_grain.py", "--pipeline", model, "--rows", "heun-sigma-min-0.1:2", "dpm2m:3",
                "dpm2m:3:autoguidance:guidance_scale=3", "--num_samples", 4, "--grid_dir", tmp_path / "grids")  # fmt: skip
    assert "| real mnist (test) | | | | 0.0000 |" in out  # MNIST's background is exactly black
    assert "| heun-sigma-min-0.1 | 2 | CFG 3 | 3 |" in out and "| dpm2m | 3 | CFG 3 | 3 |" in out  # Heun: 2N - 1 calls
    assert "| dpm2m | 3 | autoguidance:guidance_scale=3 | 3 |" in out  # a guidance method's row
    grids = tmp_path / "grids"  # made by the script: it was not there
    assert (grids / "heun-sigma-min-0.1-2.png").is_file() and (grids / "dpm2m-3.png").is_file()
    assert (grids / "dpm2m-3-autoguidance-guidance_scale-3.png").is_file()  # each setting its own grid
    refused = subprocess.run([sys.executable, "background_grain.py", "--pipeline", model, "--rows", "heun"],
                             cwd=REPO / "benchmarks", env=ENV, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "a row is SAMPLER:STEPS" in refused.stderr and "got 'heun'" in refused.stderr
    misspelt = subprocess.run([sys.executable, "background_grain.py", "--pipeline", model, "--rows", "dpm2m:3:cfg:w=3"],
                              cwd=REPO / "benchmarks", env=ENV, capture_output=True, text=True)  # fmt: skip
    assert misspelt.returncode == 2 and "'w=3' is not key=value with a key of ClassifierFreeGuidance" in misspelt.stderr


def test_guidance_update_ratio_prints_r_and_mags_scale_per_step(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    out = bench("guidance_update_ratio.py", "--pipeline", model, "--num_inference_steps", 3, "--num_images", 4,
                "--alpha", 0, 8)  # fmt: skip
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(row[0]) for row in rows] == [0, 1, 2]  # one row per guided step
    for _, mean, low, high, at_zero, at_eight in rows:
        assert 0 < float(low) <= float(mean) <= float(high)
        assert float(at_zero) == 3.0 and 1 <= float(at_eight) < 3  # alpha 0 is CFG at w; alpha > 0 lowers the scale
    refused = subprocess.run([sys.executable, "guidance_update_ratio.py", "--pipeline", model, "--alpha", "-1"],
                             cwd=REPO / "benchmarks", env=ENV, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "--alpha must be finite and >= 0" in refused.stderr


def test_cascade_cost_counts_each_stages_evaluations_flops_and_trained_steps(tmp_path):
    from app_models import write_tiny_cascade_model

    from guided_diffusers.training.model_card import write_model_card

    cascade, single = write_tiny_cascade_model(tmp_path / "cascade"), write_tiny_model(tmp_path / "single")
    trained = "- steps: {} optimizer steps of 64 images per process"
    metadata = {"datasets": ["mnist"], "library_name": "diffusers"}
    write_model_card(cascade, title="tiny cascade", metadata=metadata,
                     sections={"Training": trained.format(7), "Super-resolution stage": "Training:\n\n" + trained.format(3)})  # fmt: skip
    write_model_card(single, title="tiny", metadata=metadata, sections={"Training": trained.format(5)})
    out = bench("cascade_cost.py", "--cascade", cascade, "--single_stage", single, "--batch_size", "2", "--steps", "2",
                "--sampling_batch", "2", "--repeats", "1")  # fmt: skip
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "---" not in line}  # fmt: skip
    assert [rows[name][5] for name in ("single-stage UNet", "cascade base UNet", "cascade super-resolution UNet")] == \
        ["5", "7", "3"]  # fmt: skip
    # CFG: two evaluations per base step; the stage one per step; FLOPs = evaluations x each UNet's forward FLOPs
    assert rows["single stage"][0] == "4" and rows["cascade"][0] == "4 + 2"
    forward = {name: float(rows[name][2]) for name in ("single-stage UNet", "cascade base UNet", "cascade super-resolution UNet")}
    assert float(rows["cascade"][1]) == pytest.approx(4 * forward["cascade base UNet"] + 2 * forward["cascade super-resolution UNet"], rel=1e-2)
    assert float(rows["single stage"][1]) == pytest.approx(4 * forward["single-stage UNet"], rel=1e-2)


def test_clip_guidance_cost_times_each_setting_with_its_unet_and_clip_evaluations(tmp_path):
    from app_models import add_tiny_clip, write_tiny_text_model

    pipeline = add_tiny_clip(write_tiny_text_model(tmp_path / "text"))
    out = bench("clip_guidance_cost.py", "--pipeline", pipeline, "--steps", "4", "--batch_size", "1", "--repeats", "1")
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "---" not in line}  # fmt: skip
    evaluations = {name: cells[:2] for name, cells in rows.items() if name != "setting"}
    assert evaluations == {"conditional model (w = 1), 4 steps": ["4", "0"], "CLIP s = 10, 4 steps": ["4", "4"],
                           "CFG w = 3, 4 steps": ["8", "0"], "CFG w = 3, 2 steps": ["4", "0"],
                           "CFG w = 3 + CLIP s = 10, 4 steps": ["8", "4"]}  # fmt: skip
    assert rows["CFG w = 3, 4 steps"][3] == "1.00x"  # the reference
