"""scripts/train_shipped_models.sh: the launch line takes the GPU where torch sees one and one CPU thread where not.
ACCELERATE points at a stand-in launcher that prints its command line, and PYTHON at a stand-in interpreter that
answers the script's "is there a GPU?" question, so nothing trains."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_shipped_models.sh"


def stand_in(path: Path, body: str) -> str:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("gpu", [True, False])
def test_launch_line_follows_the_device(tmp_path, gpu):
    env = {**os.environ, "ACCELERATE": stand_in(tmp_path / "accelerate", 'printf "%s\\n" "$@"'),
           "PYTHON": stand_in(tmp_path / "python", f"exit {0 if gpu else 1}")}  # fmt: skip
    result = subprocess.run(["bash", str(SCRIPT), "mnist", "text", str(tmp_path / "runs")], capture_output=True,
                            text=True, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = result.stdout.splitlines()
    assert argv[:4] == ["launch", "--num_processes", "1", "--mixed_precision"] and argv[4] == "no"
    assert ("--cpu" in argv) is not gpu and ("--num_cpu_threads_per_process" in argv) is not gpu
    assert "training/train_text_to_image.py" in argv and argv[-1] == str(tmp_path / "runs" / "mnist-text")


def test_an_unknown_model_is_refused_with_the_choices(tmp_path):
    env = {**os.environ, "ACCELERATE": stand_in(tmp_path / "accelerate", "exit 0"),
           "PYTHON": stand_in(tmp_path / "python", "exit 1")}  # fmt: skip
    result = subprocess.run(["bash", str(SCRIPT), "mnist", "gan"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "model must be unet, weak-unet, classifier" in result.stderr and "got gan" in result.stderr


def test_the_guiding_clean_classifier_is_not_the_judges_recipe(tmp_path):
    env = {**os.environ, "ACCELERATE": stand_in(tmp_path / "accelerate", 'printf "%s\\n" "$@"'),
           "PYTHON": stand_in(tmp_path / "python", "exit 1")}  # fmt: skip
    argvs = {model: subprocess.run(["bash", str(SCRIPT), "mnist", model, "runs"], capture_output=True, text=True,
                                   env=env).stdout.splitlines() for model in ("guide-classifier", "eval-classifier")}  # fmt: skip
    guide, judge = argvs["guide-classifier"], argvs["eval-classifier"]
    assert "--noise_free" in guide and guide[-1] == "runs/mnist-guide-classifier"
    flag = lambda argv, name: argv[argv.index(name) + 1]  # noqa: E731
    assert flag(guide, "--model_config") != flag(judge, "--model_config") and flag(guide, "--seed") == "1"


def test_the_cascade_recipes_share_the_low_resolution_and_the_ablation_differs_in_augmentation_only(tmp_path):
    env = {**os.environ, "ACCELERATE": stand_in(tmp_path / "accelerate", 'printf "%s\\n" "$@"'),
           "PYTHON": stand_in(tmp_path / "python", "exit 1")}  # fmt: skip
    argvs = {model: subprocess.run(["bash", str(SCRIPT), "fashion_mnist", model, "runs"], capture_output=True, text=True,
                                   env=env).stdout.splitlines()
             for model in ("low-resolution-unet", "super-resolution", "super-resolution-no-augmentation")}  # fmt: skip
    flag = lambda argv, name: argv[argv.index(name) + 1]  # noqa: E731
    base, stage, ablation = argvs.values()
    assert flag(base, "--resolution") == flag(stage, "--low_resolution") == "14" and flag(base, "--resize_filter") == "area"
    assert flag(stage, "--max_augmentation_level") == "1" and flag(ablation, "--max_augmentation_level") == "0"
    differs = [a for a, b in zip(stage, ablation) if a != b]
    assert differs == ["1", "runs/fashion-mnist-super-resolution"]


def test_the_clip_recipes_guide_the_shipped_models_and_the_grading_one_is_clean(tmp_path):
    env = {**os.environ, "ACCELERATE": stand_in(tmp_path / "accelerate", 'printf "%s\\n" "$@"'),
           "PYTHON": stand_in(tmp_path / "python", "exit 1")}  # fmt: skip
    argvs = {model: subprocess.run(["bash", str(SCRIPT), "mnist", model, "runs"], capture_output=True, text=True,
                                   env=env).stdout.splitlines() for model in ("clip-latent", "clip-items", "clip-clean")}  # fmt: skip
    flag = lambda argv, name: argv[max(i for i, arg in enumerate(argv) if arg == name) + 1]  # noqa: E731  (the last wins)
    latent, items, clean = argvs.values()
    assert all("training/train_clip.py" in argv and flag(argv, "--train_batch_size") == "128" for argv in argvs.values())
    assert flag(latent, "--vae") == "checkpoints/mnist-text/vae" and flag(latent, "--noise_scheduler") == "checkpoints/mnist-text"
    assert flag(items, "--images") == "items" and flag(items, "--noise_scheduler") == "checkpoints/mnist"
    assert "--noise_free" in clean and "--noise_free" not in latent + items and flag(clean, "--seed") == "1"
    assert [flag(argv, "--output_dir") for argv in argvs.values()] == ["runs/mnist-clip-latent", "runs/mnist-clip-items",
                                                                       "runs/mnist-clip-clean"]  # fmt: skip
