"""training/train_unet.py through its command line, with a tiny model on a few hundred MNIST images."""

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.model_card import read_model_card

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "training" / "train_unet.py")
TINY = ["--dataset_name", "mnist", "--max_train_samples", "256", "--model_config", "tiny", "--class_conditional",
        "--train_batch_size", "16", "--logging_steps", "5", "--logger", "none", "--eval_batch_size", "10",
        "--ddpm_num_inference_steps", "3", "--save_images_steps", "1000"]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, SCRIPT, *args], env=ENV, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def weights(folder):
    return load_file(Path(folder) / "unet" / "diffusion_pytorch_model.safetensors")


def test_training_writes_a_pipeline_folder_that_loads_and_samples(tmp_path):
    out = tmp_path / "run"
    run(*TINY, "--max_train_steps", "12", "--checkpointing_steps", "5", "--use_ema", "--save_images_steps", "10",
        "--logger", "tensorboard", "--output_dir", str(out))  # fmt: skip
    for name in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "README.md", "samples.png", "samples/step-10.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]
    pipeline = GuidedDiffusionPipeline.from_pretrained(out)
    assert isinstance(pipeline.scheduler, GuidedDDPMScheduler) and pipeline.num_classes == 10
    images = pipeline(batch_size=2, class_labels=[3, 7], guidance_scale=2.0, num_inference_steps=3, output_type="np").images
    assert images.shape == (2, 28, 28, 1)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars, images = set(), set()
    for log_dir in {path.parent for path in (out / "logs").rglob("events.out.tfevents.*")}:
        events = EventAccumulator(str(log_dir))
        events.Reload()
        scalars |= set(events.Tags()["scalars"])
        images |= set(events.Tags()["images"])
    assert {"loss", "lr"} <= scalars and "samples" in images
    metadata, body = read_model_card(out)
    assert metadata["library_name"] == "diffusers" and metadata["datasets"] == ["mnist"]
    assert {"tags", "license", "pipeline_tag"} <= set(metadata)
    assert "--max_train_steps 12" in body and "12 optimizer steps" in body and "wall time" in body


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL at a random moment after the first checkpoint; --resume_from_checkpoint latest then ends with the
    same weights as an uninterrupted run."""
    args = [*TINY, "--max_train_steps", "30", "--checkpointing_steps", "4", "--use_ema", "--variance_type",
            "learned_range", "--snr_gamma", "5"]  # fmt: skip
    run(*args, "--output_dir", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, SCRIPT, *args, "--output_dir", str(killed)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not (killed / "checkpoint-4").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0, 1.5))
    process.kill()
    process.wait()
    assert not (killed / "model_index.json").exists(), "the run finished before it could be killed"
    resumed = run(*args, "--output_dir", str(killed), "--resume_from_checkpoint", "latest")
    assert re.search(r"resumed from .*checkpoint-(\d+) at step \1", resumed.stdout + resumed.stderr)
    whole, after_kill = weights(tmp_path / "whole"), weights(killed)
    assert max((whole[k] - after_kill[k]).abs().max().item() for k in whole) <= 1e-6


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, SCRIPT, *TINY, "--max_train_steps", "5000", "--checkpointing_steps", "7",
                                "--output_dir", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    deadline = time.time() + 120
    while not (out / "checkpoint-7").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    step = int(re.search(r"stopped by signal 15 at step (\d+); checkpoint saved", output).group(1))
    assert (out / f"checkpoint-{step}" / "training_state.json").is_file() and step >= 7
    resumed = run(*TINY, "--max_train_steps", str(step + 2), "--output_dir", str(out), "--resume_from_checkpoint", "latest")
    assert f"at step {step}" in resumed.stdout + resumed.stderr and (out / "model_index.json").is_file()


def test_two_processes_train_one_model(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU starts two gloo ranks; both end with the same
    weights and one output folder is written."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(free_port()), SCRIPT, *TINY, "--max_train_steps", "6", "--checkpointing_steps",
               "3", "--output_dir", str(out)]  # fmt: skip
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, "\n".join(l for l in result.stderr.splitlines() if "rank1" in l)[-3000:] or result.stderr[-3000:]
    # the number pattern, not \S+: the ranks share one pipe, and a line written without its newline once ran into
    # the next rank's line ("...e+02process 1/2: ...")
    checksums = dict(re.findall(r"process (\d)/2: weights checksum ([-+0-9.e]+)", result.stdout))
    assert set(checksums) == {"0", "1"} and checksums["0"] == checksums["1"], result.stdout[-3000:]
    assert (out / "model_index.json").is_file() and (out / "checkpoint-6").is_dir()
    assert torch.isfinite(next(iter(weights(out).values()))).all()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--resolution", "27"], "--resolution 27 must be divisible by 2"),
        (["--train_batch_size", "0"], "--train_batch_size must be a positive integer"),
        (["--model_config", "huge"], "--model_config must be one of the presets tiny, small, shallow, narrow, base"),
        (["--resume_from_checkpoint", "/no/such/checkpoint"], "is not a complete checkpoint folder"),
        (["--label_dropout", "1.0"], "--label_dropout must lie in"),
    ],
)
def test_bad_arguments_fail_before_training(tmp_path, extra, message):
    result = run(*TINY, "--max_train_steps", "5", "--output_dir", str(tmp_path / "bad"), *extra, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert not list((tmp_path / "bad").glob("checkpoint-*"))
