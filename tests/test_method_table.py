"""evaluation/method_table.py: each guidance method's best measured point, and the best point at each cost."""

import json

from guided_diffusers.evaluation.method_table import (
    accuracy_goal, best_points, best_points_markdown, best_within_budgets, compact_table, guidance_methods_report,
)  # fmt: skip

FLOOR = {"fd_own": 0.2, "fd_efficientnet": 10.0, "accuracy": 0.98, "precision": 0.9, "recall": 0.9}


def point(guider, accuracy, fd_own, fd_efficientnet=10.0, unet=40, **costs):
    return {"guider": guider, "sampler": "dpm2m", "num_inference_steps": 20, "accuracy": accuracy, "fd_own": fd_own,
            "fd_efficientnet": fd_efficientnet, "precision": 0.9, "recall": 0.8, "unet_per_image": unet, **costs}  # fmt: skip


ROWS = [
    point("cfg:guidance_scale=1", 0.95, 0.21),  # short of a 99% goal: never chosen while another CFG point meets it
    point("cfg:guidance_scale=3", 0.995, 0.30),
    point("cfg:guidance_scale=5", 1.0, 0.50),
    point("interval:guidance_scale=5", 0.999, 0.25, unet=30),
    point("autoguidance:guidance_scale=3", 0.996, 0.10, fd_efficientnet=90.0, unet=20, weak_unet_per_image=20),
    point("apg:guidance_scale=3,eta=0", 0.97, 0.22),  # APG never reaches the goal: listed at its most accurate
    point("apg:guidance_scale=5,eta=0", 0.98, 0.40),
]


def test_a_method_is_listed_at_its_lowest_fd_among_points_at_the_goal():
    best = {p.method: p for p in best_points(ROWS, 0.99, FLOOR)}
    assert best["cfg"].row["guider"] == "cfg:guidance_scale=3" and best["cfg"].meets_goal


def test_the_worse_feature_space_decides_so_a_point_must_look_real_in_both():
    order = [p.method for p in best_points(ROWS, 0.99, FLOOR)]
    # interval 1.25x / 1x; cfg 1.5x / 1x; autoguidance 0.5x own but 9x EfficientNet: after both
    assert order[:3] == ["interval", "cfg", "autoguidance"]


def test_a_method_short_of_the_goal_comes_last_at_its_most_accurate_point():
    last = best_points(ROWS, 0.99, FLOOR)[-1]
    assert last.method == "apg" and not last.meets_goal and last.row["guider"] == "apg:guidance_scale=5,eta=0"


def test_each_budget_takes_the_best_point_within_it_and_budgets_sharing_one_merge():
    table = [(lowest, highest, p.row["guider"]) for lowest, highest, p in best_within_budgets(ROWS, 0.99, FLOOR)]
    assert table == [(20, 20, "autoguidance:guidance_scale=3"), (30, 40, "interval:guidance_scale=5")]


def test_the_goal_is_the_issues_for_its_datasets_and_the_real_datas_accuracy_elsewhere():
    assert accuracy_goal({"arguments": {"dataset_name": "mnist"}, "real_data_floor": FLOOR}) == 0.99
    assert accuracy_goal({"arguments": {"dataset_name": "fashion_mnist"}, "real_data_floor": FLOOR}) == 0.95
    assert accuracy_goal({"arguments": {"dataset_name": "cifar10"}, "real_data_floor": FLOOR}) == 0.98


def test_the_report_gives_both_tables_and_nothing_for_a_sweep_without_guiders():
    report = {"arguments": {"dataset_name": "mnist"}, "real_data_floor": FLOOR, "rows": ROWS}
    text = best_points_markdown(report)
    assert "best point at accuracy >= 99%" in text and "At equal cost" in text
    assert "| apg (short of the goal) | `apg:guidance_scale=5,eta=0` |" in text
    assert "| 20 | autoguidance | `autoguidance:guidance_scale=3` | dpm2m 20 | 99.6% | 0.50x | 9.00x |" in text
    assert "20 weak UNet" in text
    assert "| 30 to 40 | interval | `interval:guidance_scale=5` |" in text
    assert best_points_markdown({**report, "rows": [{**ROWS[0], "guider": None}]}) == ""


def test_the_compact_table_puts_both_fd_ratios_and_all_evaluations_in_one_cell_each():
    report = {"arguments": {"dataset_name": "mnist"}, "real_data_floor": FLOOR, "rows": ROWS}
    lines = compact_table(report).splitlines()
    assert lines[0] == "| method | setting | accuracy | FD / floor (own, EffNet) | recall | evaluations / image |"
    assert "| interval | `interval:guidance_scale=5` | 99.9% | 1.25x / 1.00x | 0.800 | 30 |" in lines
    assert "| autoguidance | `autoguidance:guidance_scale=3` | 99.6% | 0.50x / 9.00x | 0.800 | 20 + 20 weak UNet |" in lines


def test_a_model_folder_finds_its_guider_sweep(tmp_path):
    assert guidance_methods_report(tmp_path) is None and guidance_methods_report(None) is None
    sweep = tmp_path / "evaluation" / "mnist-guidance-methods"
    sweep.mkdir(parents=True)
    (sweep / "results.json").write_text(json.dumps({"rows": ROWS}))
    assert guidance_methods_report(tmp_path)["rows"] == ROWS
