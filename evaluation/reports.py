"""What the evaluation scripts write beside their numbers: a sample grid per setting, and one report from several runs
of one sweep. A sweep too long for one sitting (the guidance methods take hours per dataset on a CPU) runs in parts,
each part writing its own results.json; `combined_rows` then joins the parts' rows where they can share a table."""

import json
from pathlib import Path

import torch

from ..pipelines.image_utils import make_grid


def save_sample_grid(path: Path, images: torch.Tensor, labels, per_class: int = 10) -> None:
    """The first `per_class` samples of each class, a row per class (or the first 100 unlabelled samples)."""
    if labels is None:
        chosen = images[:100]
        rows = max(1, len(chosen) // 10)
    else:
        classes = labels.unique()
        chosen = torch.cat([images[labels == label][:per_class] for label in classes])
        rows = len(classes)
    pixels = ((chosen + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    make_grid(pixels, rows=rows, scale=1).save(path)


def evaluation_section_text(folder: Path, relative: Path, grid_rows: str = "class") -> str:
    """A model card's section for an evaluation folder: its results.md, then its plots and links to its sample grids
    (a row per class or prompt) at `relative`, the folder's place as seen from the card."""
    text = [(folder / "results.md").read_text().strip()]
    plots = sorted(png for png in folder.glob("*.png") if not png.stem.startswith("samples_"))  # sweeps, FD vs steps
    grids = sorted(folder.glob("samples_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    text += [f"![{png.stem}]({relative}/{png.name})" for png in plots]
    if grids:
        text.append(f"Sample grids (a row per {grid_rows}), by table row: " + " ".join(
            f"[{png.stem.split('_')[1]}]({relative}/{png.name})" for png in grids))  # fmt: skip
    return "\n\n".join(text)


def load_reports(run_dirs: list[str]) -> list[dict]:
    """Each run's results.json, refused with the run's name where there is none (a run still sampling, or a typo)."""
    reports = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise SystemExit(f"--combine: {run_dir} has no results.json; give the folders of finished runs.")
        reports.append(json.loads(path.read_text()))
    return reports


def same_floor(a: dict, b: dict, rtol: float = 1e-6) -> bool:
    """The same real-data floor: the same metrics, each equal up to float rounding (the same data and features,
    summed in another order under another thread count, differ in the 8th digit)."""
    if a.keys() != b.keys():
        return False
    return all(abs(a[k] - b[k]) <= rtol * max(abs(a[k]), abs(b[k])) if isinstance(a[k], float) else a[k] == b[k] for k in a)


def combined_rows(run_dirs: list[str], reports: list[dict], settings_of, same_keys, row_key) -> list[dict]:
    """The rows of all `reports`, in order. Rows can share a table only if their runs drew the same samples per row
    and measured the same floor: a run whose settings (`settings_of(report)`) differ from the first's in any of
    `same_keys`, or whose real-data floor differs, is refused, as is a row (`row_key(row)`) that two runs hold."""
    first = settings_of(reports[0])
    rows, source_of = [], {}
    for run_dir, report in zip(run_dirs, reports):
        differing = [key for key in same_keys if settings_of(report).get(key) != first.get(key)]
        if not same_floor(report["real_data_floor"], reports[0]["real_data_floor"]):
            differing.append("real_data_floor")
        if differing:
            raise SystemExit(f"--combine: {run_dir} differs from {run_dirs[0]} in {', '.join(differing)}; only runs "
                             "of the same model, seed, N and setting can share a table.")  # fmt: skip
        for row in report["rows"]:
            key = row_key(row)
            if key in source_of:
                raise SystemExit(f"--combine: {key} is a row of both {source_of[key]} and {run_dir}; keep one.")
            source_of[key] = run_dir
            rows.append(row)
    return rows


def sources_of(run_dirs: list[str], reports: list[dict]) -> list[dict]:
    """Where each row came from: every run's folder and command, an earlier combination's sources flattened in."""
    return [source for run_dir, report in zip(run_dirs, reports)
            for source in report.get("sources", [{"run_dir": run_dir, "command": report.get("command"),
                                                  **({"machine": report["machine"]} if "machine" in report else {})}])]  # fmt: skip
