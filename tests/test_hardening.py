"""Issue 22's probes as tests: no secret reaches a file, no pickle loads, bad input never gives a silent wrong
result (a table of inputs and the message each gets), and runs are never lost or mixed."""

import sys
import textwrap
from pathlib import Path

import pytest
from script_runner import REPO, run_script

sys.path.insert(0, str(REPO))
from app_models import write_tiny_model  # noqa: E402
from guided_diffusers.training.args import REDACTED, recorded_command, redacted  # noqa: E402

TOKEN = "hf_FAKEsecret1234567890"
TINY_UNET = ["--dataset_name", "mnist", "--max_train_samples", "64", "--model_config", "tiny", "--class_conditional",
             "--train_batch_size", "16", "--logging_steps", "2", "--eval_batch_size", "4",
             "--ddpm_num_inference_steps", "2", "--save_images_steps", "1000", "--checkpointing_steps", "2"]  # fmt: skip


# ----------------------------------------------------------------------------------------------- secrets
def test_secret_flags_are_redacted_in_both_spellings():
    assert redacted(["--hub_token", TOKEN, "--seed", "1"]) == ["--hub_token", REDACTED, "--seed", "1"]
    assert redacted([f"--hub_token={TOKEN}"]) == [f"--hub_token={REDACTED}"]
    assert TOKEN not in recorded_command("accelerate launch", "training/train_unet.py", ["--hub_token", TOKEN])


HUB_STAND_IN = textwrap.dedent('''
    """Runs a training script with huggingface_hub's upload replaced by a copy into a local folder, applying the same
    ignore patterns: the files that would reach the Hub."""
    import runpy, shutil, sys
    from pathlib import Path
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    hub, script = Path(sys.argv[1]), sys.argv[2]

    def create_repo(repo_id, token=None, exist_ok=False, **kwargs):
        hub.mkdir(parents=True, exist_ok=True)

    def upload_folder(repo_id, folder_path, token=None, ignore_patterns=None, **kwargs):
        files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, ignore_patterns=ignore_patterns):
            (hub / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(folder_path) / name, hub / name)

    huggingface_hub.create_repo, huggingface_hub.upload_folder = create_repo, upload_folder
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")
''')


def test_the_hub_token_reaches_no_file_of_the_output_or_the_pushed_folder(tmp_path):
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(HUB_STAND_IN)
    out, hub = tmp_path / "run", tmp_path / "hub"
    run_script(str(stand_in), hub, REPO / "training" / "train_unet.py", *TINY_UNET, "--max_train_steps", "2",
               "--logger", "tensorboard", "--push_to_hub", "--hub_model_id", "me/tiny", "--hub_token", TOKEN,
               "--output_dir", out)  # fmt: skip
    assert (hub / "README.md").is_file() and (hub / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    files = [p for folder in (out, hub) for p in folder.rglob("*") if p.is_file()]
    assert any("hparams" in p.name or "events.out" in p.name for p in files)  # TensorBoard did record the flags
    assert not [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert f"--hub_token {REDACTED}" in (out / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ pickle
@pytest.fixture()
def pickle_only_model(tmp_path):
    from diffusers import UNet2DModel

    folder = write_tiny_model(tmp_path / "pickled")
    unet = UNet2DModel.from_pretrained(folder / "unet")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(folder / "unet", safe_serialization=False)  # diffusion_pytorch_model.bin
    return folder


def test_a_pickle_only_folder_is_refused_on_every_loading_path(pickle_only_model, tmp_path, caplog):
    from guided_diffusers.pipelines import GuidedDiffusionPipeline, load_pipeline
    from space.models import load_models

    message = "weights in pickle format only \\(unet/diffusion_pytorch_model.bin\\)"
    with pytest.raises(ValueError, match=message):
        GuidedDiffusionPipeline.from_pretrained(pickle_only_model)
    with pytest.raises(ValueError, match=message):
        load_pipeline(str(pickle_only_model))
    with pytest.raises(ValueError, match="use_safetensors=False` is refused"):
        GuidedDiffusionPipeline.from_pretrained(pickle_only_model, use_safetensors=False)
    with pytest.raises(SystemExit, match="could be loaded"):  # the app serves nothing rather than pickle
        load_models(str(pickle_only_model))
    assert "pickle format only" in caplog.text
    result = run_script("training/evaluate.py", "--pipeline", pickle_only_model, "--eval_classifier",
                        pickle_only_model / "classifier", "--dataset_name", "mnist", "--num_samples", "4",
                        "--output_dir", tmp_path / "eval", check=False)  # fmt: skip
    assert result.returncode != 0 and "pickle format only" in result.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-step run with checkpoints at steps 2 and 4; tests work on copies of it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run_script("training/train_unet.py", *TINY_UNET, "--max_train_steps", "4", "--logger", "none", "--output_dir", out)
    return out


def copy_of(run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_a_checkpoint_with_pickled_model_weights_is_not_resumed(finished_run, tmp_path):
    out = copy_of(finished_run, tmp_path)
    checkpoint = out / "checkpoint-4"
    (checkpoint / "model.safetensors").rename(checkpoint / "pytorch_model.bin")
    (checkpoint / "checksums.json").unlink()  # a checkpoint from elsewhere, not damaged: pickled
    result = run_script("training/train_unet.py", *TINY_UNET, "--max_train_steps", "6", "--logger", "none",
                        "--resume_from_checkpoint", "latest", "--output_dir", out, check=False)  # fmt: skip
    assert result.returncode != 0 and "safetensors weights only" in result.stderr


# ------------------------------------------------------------------------------------ silent wrong results
@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from guided_diffusers.pipelines import GuidedDiffusionPipeline

    pipe = GuidedDiffusionPipeline.from_pretrained(write_tiny_model(tmp_path_factory.mktemp("tiny") / "m"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    return pipe(**{"batch_size": 2, "num_inference_steps": 2, "output_type": "pt", **kwargs})


def latents_of(shape=(2, 1, 28, 28), **kwargs):
    import torch

    return torch.zeros(shape, **kwargs)


BAD_PIPELINE_CALLS = {  # id: (keyword arguments, the message)
    "fractional class": (dict(class_labels=[3.7]), "must be integer class indices"),
    "nested classes": (dict(class_labels=[[1, 2]]), "must be integer class indices"),
    "infinite CFG": (dict(class_labels=[1], guidance_scale=float("inf")), "`guidance_scale` must be a finite number"),
    "NaN CFG": (dict(class_labels=[1], guidance_scale=float("nan")), "`guidance_scale` must be a finite number"),
    "infinite classifier scale": (dict(class_labels=[1], classifier_scale=float("inf")), "`classifier_scale` must be a finite"),
    "string CFG": (dict(class_labels=[1], guidance_scale="3"), "`guidance_scale` must be a number; got '3'"),
    "float batch": (dict(batch_size=2.0), "`batch_size` must be an integer"),
    "negative eta with DDPM": (dict(eta=-0.5), "`eta` must lie in \\[0, inf\\]"),
    "NaN eta with DDPM": (dict(eta=float("nan")), "`eta` must be a finite number"),
    "short generator list": (dict(generator=[None]), "one per image, `batch_size`=2"),
    "NumPy latents": (dict(latents="numpy"), "must be a floating-point torch.Tensor"),
    "wrong-size latents": (dict(latents=latents_of((2, 1, 32, 32))), "must have shape \\(2, 1, 28, 28\\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_PIPELINE_CALLS))
def test_bad_pipeline_arguments_raise_a_value_error_naming_them(pipe, case):
    import numpy as np
    import torch

    kwargs, message = BAD_PIPELINE_CALLS[case]
    if kwargs.get("latents") == "numpy":
        kwargs = {**kwargs, "latents": np.zeros((2, 1, 28, 28), dtype=np.float32)}
    if kwargs.get("generator") == [None]:
        kwargs = {**kwargs, "generator": [torch.Generator().manual_seed(0)]}
    with pytest.raises(ValueError, match=message):
        sample(pipe, **kwargs)


def test_nan_class_weights_and_other_latent_dtypes(pipe):
    import torch

    with pytest.raises(ValueError, match="must be finite and non-negative"):
        sample(pipe, class_labels=torch.tensor([[float("nan")] + [0.1] * 9]))
    for dtype in (torch.float64, torch.float16):  # any float dtype is cast to the UNet's, and samples
        assert torch.isfinite(sample(pipe, latents=latents_of(dtype=dtype)).images).all()


def test_inversion_bounds_and_reconstruction_size(pipe):
    image = torch_image()
    with pytest.raises(ValueError, match="`fixed_point_iterations` must lie in \\[0, 50\\]"):
        pipe.invert(image, num_inference_steps=2, fixed_point_iterations=10**9)
    with pytest.raises(ValueError, match="`num_frames` must lie in \\[2, 1024\\]"):
        pipe.interpolate(image, image, num_frames=10**6, num_inference_steps=2)
    with pytest.raises(ValueError, match="must have shape \\(1, 1, 28, 28\\)"):
        pipe.reconstruct(latents_of((1, 1, 32, 32)), num_inference_steps=2)


def torch_image():
    import torch

    return torch.full((1, 1, 28, 28), 0.5)


BAD_SCHEDULER_CONFIGS = {
    "NaN beta_start": (dict(beta_start=float("nan")), "every beta must be a number in \\(0, 1\\]"),
    "infinite beta_end": (dict(beta_end=float("inf")), "every beta must be a number in \\(0, 1\\]"),
    "NaN in trained_betas": (dict(num_train_timesteps=3, trained_betas=[0.1, float("nan"), 0.2]), "every beta"),
    "string boolean": (dict(thresholding="false"), "`thresholding` must be true or false"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_SCHEDULER_CONFIGS))
@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm2m"])
def test_bad_scheduler_configs_are_refused(case, name):
    from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler, GuidedDPMSolverMultistepScheduler

    cls = {"ddpm": GuidedDDPMScheduler, "ddim": GuidedDDIMScheduler, "dpm2m": GuidedDPMSolverMultistepScheduler}[name]
    config, message = BAD_SCHEDULER_CONFIGS[case]
    with pytest.raises(ValueError, match=message):
        cls(**config)


def test_a_nan_in_a_scheduler_config_json_is_refused(tmp_path):
    from guided_diffusers.schedulers import GuidedDDPMScheduler

    GuidedDDPMScheduler().save_pretrained(tmp_path)
    path = tmp_path / "scheduler_config.json"
    path.write_text(path.read_text().replace('"beta_start": 0.0001', '"beta_start": NaN'))
    with pytest.raises(ValueError, match="every beta"):
        GuidedDDPMScheduler.from_pretrained(tmp_path)


def test_timesteps_out_of_range_are_value_errors():
    import torch

    from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler

    scheduler, x = GuidedDDPMScheduler(), torch.zeros(1, 1, 4, 4)
    for t in (-1, 1000):
        with pytest.raises(ValueError, match="`timesteps` must be integers in \\[0, 999\\]"):
            scheduler.add_noise(x, x, torch.tensor([t]))
    ddim = GuidedDDIMScheduler()
    ddim.set_timesteps(10)
    for t in (-1, 1000, 5):  # outside [0, T) or not in the schedule
        with pytest.raises(ValueError, match="is not in the schedule"):
            ddim.step(x, t, x)


BAD_TRAINING_FLAGS = {
    "negative snr_gamma": (["--snr_gamma", "-5"], "--snr_gamma must be a positive number"),
    "negative max_train_samples": (["--max_train_samples", "-59990"], "--max_train_samples must be a positive integer"),
    "zero max_train_samples": (["--max_train_samples", "0"], "--max_train_samples must be a positive integer"),
    "negative warmup": (["--lr_warmup_steps", "-1"], "--lr_warmup_steps must be 0 or more"),
    "EMA decay over 1": (["--ema_max_decay", "2"], "--ema_max_decay must lie in (0, 1]"),
    "zero eval batch": (["--eval_batch_size", "0"], "--eval_batch_size must be a positive integer"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_TRAINING_FLAGS))
def test_bad_training_flags_fail_before_training(case):
    from guided_diffusers.training.train_unet import parse_args

    extra, message = BAD_TRAINING_FLAGS[case]
    with pytest.raises(ValueError) as error:
        parse_args([*TINY_UNET, "--output_dir", "/tmp/never-written", *extra])
    assert message in str(error.value)


# ------------------------------------------------------------------------------------------ lost or mixed runs
def train(out, *extra, check=True):
    return run_script("training/train_unet.py", *TINY_UNET, "--logger", "none", *extra, "--output_dir", out, check=check)


def unet_weights(folder):
    from safetensors.torch import load_file

    return load_file(Path(folder) / "unet" / "diffusion_pytorch_model.safetensors")


LONG = ["--max_train_steps", "60", "--checkpointing_steps", "20"]  # outlasts the second run's start-up


def test_a_second_run_into_a_folder_in_use_is_refused_and_the_first_is_untouched(tmp_path):
    import subprocess
    import time

    from script_runner import ENV

    out = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, str(REPO / "training" / "train_unet.py"), *TINY_UNET, "--logger", "none",
                              *LONG, "--output_dir", str(out)], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not (out / ".run.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = train(out, "--max_train_steps", "4", check=False)
    assert second.returncode != 0 and f"is in use by another run (pid {first.pid})" in second.stderr
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output[-2000:]
    alone = tmp_path / "alone"
    train(alone, *LONG)
    ours, reference = unet_weights(out), unet_weights(alone)
    assert all((ours[k] - reference[k]).abs().max().item() == 0 for k in ours)  # nothing of the second run in it


def test_a_fresh_run_over_another_runs_checkpoints_needs_overwrite_output_dir(finished_run, tmp_path):
    out = copy_of(finished_run, tmp_path)
    refused = train(out, "--max_train_steps", "2", check=False)
    assert refused.returncode != 0 and "holds another run's checkpoints (checkpoint-2, checkpoint-4)" in refused.stderr
    train(out, "--max_train_steps", "3", "--checkpointing_steps", "3", "--overwrite_output_dir")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # the other run's are gone


def test_an_output_dir_that_is_a_file_fails_before_training(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    result = train(path, "--max_train_steps", "2", check=False)
    assert result.returncode != 0 and "is a file, not a folder" in result.stderr and "step" not in result.stdout


def test_latest_skips_a_damaged_newest_checkpoint_and_resumes_to_the_uninterrupted_weights(finished_run, tmp_path):
    whole, damaged = tmp_path / "whole", copy_of(finished_run, tmp_path)  # checkpoints at steps 2 and 4
    train(whole, "--max_train_steps", "6")
    model = damaged / "checkpoint-4" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])  # truncated
    from guided_diffusers.training.checkpointing import resolve_resume

    with pytest.raises(ValueError, match="checkpoint-4' is damaged: model.safetensors"):
        resolve_resume(str(damaged / "checkpoint-4"), damaged)
    resumed = train(damaged, "--max_train_steps", "6", "--resume_from_checkpoint", "latest")
    assert "skipping" in resumed.stdout and "damaged model.safetensors" in resumed.stdout
    assert "at step 2" in resumed.stdout + resumed.stderr
    ours, reference = unet_weights(damaged), unet_weights(whole)
    assert max((ours[k] - reference[k]).abs().max().item() for k in ours) <= 1e-6


def test_disk_full_while_saving_removes_the_partial_checkpoint_and_keeps_the_previous(tmp_path):
    import errno

    from guided_diffusers.training.checkpointing import save_checkpoint

    class FullDisk:
        is_main_process = True

        def wait_for_everyone(self):
            pass

        def save_state(self, folder):
            Path(folder).mkdir(parents=True)
            (Path(folder) / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    previous = tmp_path / "checkpoint-2"
    previous.mkdir()
    (previous / "training_state.json").write_text("{}")
    with pytest.raises(OSError, match="No space left on the device while saving checkpoint 4") as error:
        save_checkpoint(FullDisk(), tmp_path, 4, {"step": 4})
    assert error.value.errno == errno.ENOSPC
    assert not (tmp_path / ".tmp-checkpoint-4").exists() and (previous / "training_state.json").is_file()
