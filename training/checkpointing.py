"""Checkpoints that survive a kill: written to a temporary folder and renamed when complete, so `latest` never
picks a half-written one. Contents: accelerate's `save_state` (model as safetensors; optimizer and RNG states
loaded back with `weights_only=True`), the EMA weights as safetensors, the step and LR schedule as JSON, and the
sha256 of every file (`checksums.json`), so that a checkpoint damaged later is named and `latest` falls back to the
newest one that verifies. Disk full while saving: the partial folder is removed, the previous checkpoint kept.
Nothing is registered with accelerate as a custom object, because those are loaded back with pickle."""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "checkpoint-"
STATE_FILE = "training_state.json"
CHECKSUMS_FILE = "checksums.json"
EMA_FILE = "ema.safetensors"


def complete_checkpoints(output_dir) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint in `output_dir`, oldest first."""
    found = []
    for path in Path(output_dir).glob(f"{PREFIX}*"):
        match = re.fullmatch(rf"{PREFIX}(\d+)", path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(resume_from_checkpoint, output_dir) -> Path | None:
    """The folder to resume from: an explicit path (must exist and verify), or 'latest': the newest checkpoint that
    verifies, skipping damaged ones with a warning (None when there is none yet)."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = complete_checkpoints(output_dir)
        for _, path in reversed(checkpoints):
            damaged = damaged_files(path)
            if not damaged:
                return path
            print(f"warning: skipping {path}: damaged {', '.join(damaged)} (checksum mismatch)", flush=True)
        if checkpoints:  # asked to resume, and every checkpoint is damaged: starting over would be a surprise
            raise ValueError(f"--resume_from_checkpoint latest: every checkpoint in {str(output_dir)!r} is damaged "
                             f"({', '.join(p.name for _, p in checkpoints)}); start over with --overwrite_output_dir.")
        return None
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a complete checkpoint folder.")
    damaged = damaged_files(path)
    if damaged:
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r} is damaged: {', '.join(damaged)} "
                         "(missing, or not the bytes that were saved).")  # fmt: skip
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_checksums(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS_FILE)
    _write_json_durably(folder / CHECKSUMS_FILE, {p.relative_to(folder).as_posix(): sha256(p) for p in files})


def damaged_files(folder: Path) -> list[str]:
    """Files of a checkpoint that are missing or differ from the checksums recorded when it was published (none
    for a checkpoint written before checksums were recorded)."""
    recorded = folder / CHECKSUMS_FILE
    if not recorded.is_file():
        return []
    try:
        expected = json.loads(recorded.read_text())
    except ValueError:
        return [CHECKSUMS_FILE]
    return [name for name, digest in expected.items() if not (folder / name).is_file() or sha256(folder / name) != digest]


def save_checkpoint(accelerator, output_dir, step: int, state: dict, ema=None, total_limit=None) -> Path:
    """Save on every process (accelerate writes per-process RNG state), publish atomically from the main one."""
    final = Path(output_dir) / f"{PREFIX}{step}"
    temporary = Path(output_dir) / f".tmp-{PREFIX}{step}"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    with cleaned_up_when_full(temporary, step):
        accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()  # every process's files are in before the folder is published
    if accelerator.is_main_process:
        with cleaned_up_when_full(temporary, step):
            if ema is not None:
                save_file({f"shadow.{i}": p.contiguous() for i, p in enumerate(ema.shadow_params)}, temporary / EMA_FILE)
                state = {**state, "ema_optimization_step": ema.optimization_step}
            _write_json_durably(temporary / STATE_FILE, state)
            record_checksums(temporary)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _prune(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


class cleaned_up_when_full:
    """Disk full while saving (torch says "unexpected pos", Python ENOSPC): remove the partial folder, keep the
    earlier checkpoints, and say so plainly."""

    def __init__(self, temporary: Path, step: int):
        self.temporary, self.step = temporary, step

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        full = isinstance(error, OSError) and error.errno == errno.ENOSPC or (
            isinstance(error, RuntimeError) and "unexpected pos" in str(error))  # fmt: skip
        if not full:
            return False
        shutil.rmtree(self.temporary, ignore_errors=True)
        raise OSError(errno.ENOSPC, f"No space left on the device while saving checkpoint {self.step}; the partial "
                                    f"folder was removed and the earlier checkpoints are kept") from error


def load_checkpoint(accelerator, folder: Path, ema=None) -> dict:
    if not any(folder.glob("model*.safetensors")):  # accelerate would fall back to a pickled pytorch_model.bin
        raise ValueError(f"{folder}: no model*.safetensors; this project resumes from safetensors weights only.")
    accelerator.load_state(str(folder))
    state = json.loads((folder / STATE_FILE).read_text())
    if ema is not None:
        tensors = load_file(folder / EMA_FILE)
        ema.shadow_params = [tensors[f"shadow.{i}"].to(p.device) for i, p in enumerate(ema.shadow_params)]
        ema.optimization_step = state["ema_optimization_step"]
    return state


def _write_json_durably(path: Path, data: dict) -> None:
    with open(path, "w") as file:
        json.dump(data, file, indent=2)
        file.flush()
        os.fsync(file.fileno())


def _prune(output_dir, total_limit) -> None:
    if total_limit is None:
        return
    for _, path in complete_checkpoints(output_dir)[:-total_limit]:
        shutil.rmtree(path)


class StopRequest:
    """Remembers a SIGTERM or SIGINT instead of dying mid-step, so the loop can checkpoint and exit cleanly."""

    def __init__(self):
        self.signal = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self.signal = signum

    def requested(self, accelerator, check_others: bool) -> bool:
        """Whether any process was asked to stop; across processes only when `check_others` (it synchronises)."""
        local = self.signal is not None
        if accelerator.num_processes == 1 or not check_others:
            return local
        flag = torch.tensor([float(local)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
