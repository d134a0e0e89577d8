"""Sample batches kept on disk, so that a sweep too long for one sitting (1,000 steps on a CPU: hours per row)
resumes after an interruption instead of starting over, as training resumes from its latest checkpoint.

Each finished batch is one safetensors file, written atomically, in a folder named after the setting. Everything
that determines the samples is the folder's key, stored in every file and compared on reading: the weights (a
digest of every module of the pipeline), the setting, the seed, the batch size and the device. A batch made under
any other key is never re-used.
"""

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def weights_digest(pipe, exclude: tuple = (), only: tuple | None = None) -> str:
    """sha256 of the parameters and buffers of the torch modules of a pipeline (all, or `only` those, less
    `exclude`), components in name order."""
    digest = hashlib.sha256()
    for name, component in sorted(pipe.components.items()):
        if name in exclude or (only is not None and name not in only):
            continue
        if isinstance(component, torch.nn.Module):
            add_module(digest, name, component)
    return digest.hexdigest()


def add_module(digest, name: str, module: torch.nn.Module) -> None:
    """Feed a module's parameters and buffers, each under its key, to a hashlib digest."""
    for key, tensor in module.state_dict().items():
        digest.update(f"{name}.{key}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


class SampleCache:
    """The batches of one setting under `root`. `resume=False` still writes every batch, so that the run can be
    resumed later, but reads none. `seconds` adds up the sampling time of the batches loaded or saved, so a resumed
    row reports the time its samples took, not the time it took to read them; `evaluations` keeps each batch's
    network evaluations (the pipeline's count) the same way."""

    def __init__(self, root, key: dict, resume: bool):
        self.key = json.dumps(key, sort_keys=True)
        setting = key["setting"]
        guidance = (setting.get("guider") or "").partition(":")[0] or setting.get("guidance_scale")
        readable = f"{setting['sampler']}-{setting['num_inference_steps']}-{guidance}"
        self.folder = Path(root) / f"{readable}-{hashlib.sha256(self.key.encode()).hexdigest()[:12]}"
        self.resume = resume
        self.seconds = 0.0
        self.evaluations: list[dict] = []

    def _path(self, start: int, count: int) -> Path:
        return self.folder / f"batch-{start:06d}-{count}.safetensors"

    def load(self, start: int, count: int) -> torch.Tensor | None:
        """The images of a finished batch, or None."""
        path = self._path(start, count)
        if not (self.resume and path.is_file()):
            return None
        with safe_open(path, framework="pt") as batch:
            metadata = batch.metadata()
            if metadata.get("key") != self.key:  # a hash collision of the folder name, or a hand-copied file
                raise ValueError(f"{path} was sampled under another setting or other weights; delete it.")
            self.seconds += float(metadata["seconds"])
            self.evaluations.append(json.loads(metadata.get("evaluations", "{}")))
            return batch.get_tensor("images")

    def save(self, start: int, images: torch.Tensor, seconds: float, evaluations: dict | None = None) -> None:
        """Write to a temporary name, then rename: a batch on disk is always whole."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(start, len(images))
        partial = path.with_suffix(".partial")
        metadata = {"key": self.key, "seconds": repr(seconds), "evaluations": json.dumps(evaluations or {})}
        save_file({"images": images.contiguous()}, partial, metadata=metadata)
        os.replace(partial, path)
        self.seconds += seconds
        self.evaluations.append(evaluations or {})

    def measured(self, judge: str, num_samples: int, measure) -> dict:
        """The metrics of this setting's first `num_samples` samples under `judge` (a `Judge.fingerprint`): read
        back where an earlier run saved them and this one resumes, else `measure()`, saved atomically beside the
        batches. Measuring 1,000 images in two feature spaces takes minutes on a CPU; a resumed sweep of finished
        rows should not pay it again."""
        path = self.folder / f"measures-{num_samples}-{judge[:12]}.json"
        if self.resume and path.is_file():
            saved = json.loads(path.read_text())
            if saved["key"] == self.key and saved["judge"] == judge:
                return saved["measures"]
        measures = measure()
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"key": self.key, "judge": judge, "measures": measures}))
        os.replace(partial, path)
        return measures

    def cost_per_image(self, num_samples: int) -> dict:
        """Seconds, and UNet and classifier evaluations (weak UNet, UNet forward + backward and clean classifier ones,
        if any), per image over the batches read or written. A batch's counts are already per image (one per
        prediction, each over the whole batch)."""
        batches = max(len(self.evaluations), 1)
        per_image = {name: sum(e.get(name, 0) for e in self.evaluations) / batches for name in EVALUATIONS}
        return {"seconds_per_image": self.seconds / num_samples,
                **{f"{name}_per_image": count for name, count in per_image.items() if count or name in ALWAYS}}


# the network evaluations a sweep row reports: the first two always, the others where a setting makes them
EVALUATIONS = ("unet", "classifier", "weak_unet", "unet_gradient", "clean_classifier", "super_resolution_unet")
ALWAYS = ("unet", "classifier")


def sweep_cache(output_dir, weights: str, setting: dict, args) -> SampleCache:
    """The cache of one setting of an evaluation sweep (`args`: its seed, batch_size, device and resume)."""
    key = dict(weights=weights, setting=setting, seed=args.seed, batch_size=args.batch_size, device=args.device)
    return SampleCache(Path(output_dir) / "samples", key, args.resume)
