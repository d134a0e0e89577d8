"""evaluation/result_tables.py: the measured tables in the README, docs/ and model cards equal their results."""

import json
from pathlib import Path

import pytest

from guided_diffusers.evaluation.result_tables import sync, synced_card, synced_markers

REPO = Path(__file__).resolve().parent.parent
FLOOR = {"fd_own": 0.2, "fd_efficientnet": 10.0, "accuracy": 0.98, "precision": 0.9, "recall": 0.9}
ROW = {"guider": "cfg:guidance_scale=3", "sampler": "dpm2m", "num_inference_steps": 20, "accuracy": 0.995,
       "fd_own": 0.3, "fd_efficientnet": 20.0, "precision": 0.9, "recall": 0.7, "unet_per_image": 40}  # fmt: skip


def sweep_folder(root: Path, name: str = "mnist-guidance-methods") -> Path:
    folder = root / "checkpoints" / "mnist" / "evaluation" / name
    folder.mkdir(parents=True)
    report = {"arguments": {"dataset_name": "mnist"}, "real_data_floor": FLOOR, "rows": [ROW]}
    (folder / "results.json").write_text(json.dumps(report))
    (folder / "results.md").write_text("the sweep's table\n")
    (folder / "fronts.png").write_bytes(b"")
    (folder / "samples_0.png").write_bytes(b"")
    return folder


def test_every_table_in_the_repository_equals_the_results_it_names():
    # after combining a sweep: python scripts/sync_result_tables.py
    assert sync(REPO, check=True) == []


def test_a_marked_table_is_regenerated_and_the_text_around_it_kept(tmp_path):
    sweep_folder(tmp_path)
    marker = "<!-- results: checkpoints/mnist/evaluation/mnist-guidance-methods compact -->\n"
    text = f"Before.\n\n{marker}| stale | table |\n<!-- /results -->\n\nAfter.\n"
    synced = synced_markers(text, tmp_path)
    assert synced.startswith(f"Before.\n\n{marker}| method | setting |") and synced.endswith("<!-- /results -->\n\nAfter.\n")
    assert "| cfg | `cfg:guidance_scale=3` | 99.5% | 1.50x / 2.00x | 0.700 | 40 |" in synced
    assert synced_markers(synced, tmp_path) == synced


@pytest.mark.parametrize("marker, error", [("mnist-guidance-methods table", "kind must be one of best, equal-cost"),
                                           ("missing-folder best", "does not exist")])  # fmt: skip
def test_a_marker_with_an_unknown_kind_or_folder_is_refused_by_name(tmp_path, marker, error):
    sweep_folder(tmp_path)
    folder = "checkpoints/mnist/evaluation/" + marker
    with pytest.raises(ValueError, match=error):
        synced_markers(f"<!-- results: {folder} -->\n| old |\n<!-- /results -->\n", tmp_path)


def test_a_cards_evaluation_section_becomes_its_folders_results_and_others_stay(tmp_path):
    sweep_folder(tmp_path)
    model = tmp_path / "checkpoints" / "mnist"
    card = ("# model\n\n## Evaluation: mnist-guidance-methods\n\nold numbers\n\n"
            "## Evaluation: mnist-cfg\n\nshipped without results.md\n\n## Usage\n\ncode\n")  # fmt: skip
    synced = synced_card(card, model)
    assert ("## Evaluation: mnist-guidance-methods\n\nthe sweep's table\n\n"
            "![fronts](evaluation/mnist-guidance-methods/fronts.png)\n\n"
            "Sample grids (a row per class), by table row: [0](evaluation/mnist-guidance-methods/samples_0.png)\n\n"
            "## Evaluation: mnist-cfg\n\nshipped without results.md\n\n## Usage\n\ncode\n") in synced  # fmt: skip
    (model / "README.md").write_text(card)
    assert sync(tmp_path, check=True) == [model / "README.md"] and (model / "README.md").read_text() == card
    assert sync(tmp_path) == [model / "README.md"] and (model / "README.md").read_text() == synced
