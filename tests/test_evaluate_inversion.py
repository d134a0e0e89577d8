"""training/evaluate_inversion.py end to end on a tiny random pipeline and a few real MNIST test digits."""

import json
import os
import subprocess
import sys
from pathlib import Path

from app_models import write_tiny_model

SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "evaluate_inversion.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], env=ENV, capture_output=True, text=True, timeout=600)


def test_writes_the_error_table_for_every_setting(tmp_path):
    model, out = write_tiny_model(tmp_path / "model"), tmp_path / "eval"
    result = run("--pipeline", str(model), "--num_images", "6", "--batch_size", "4", "--num_inference_steps", "2", "5",
                 "--guidance_scales", "0", "2", "--cfg_plus_plus_scales", "0.5", "--fixed_point_iterations", "0", "3",
                 "--output_dir", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 2 * 3 * 2
    assert all(row["mse"] >= 0 and row["mse_max"] >= row["mse"] for row in rows)
    table = (out / "results.md").read_text()
    assert "unconditional" in table and "w = 2" in table and "CFG++ lambda = 0.5" in table
    assert table.count("\n| ") == 1 + 1 + 12  # header, rule, rows
    assert (out / "reconstruction_error.png").stat().st_size > 1000
    # the fixed point makes each step's inversion exact: no worse than the one-evaluation estimate
    by_setting = {(r["num_inference_steps"], r["method"], r["guidance_scale"], r["fixed_point_iterations"]): r["mse"]
                  for r in rows}  # fmt: skip
    assert by_setting[(5, "cfg", 0.0, 3)] <= by_setting[(5, "cfg", 0.0, 0)]
    assert by_setting[(5, "cfg++", 0.5, 3)] <= by_setting[(5, "cfg++", 0.5, 0)]


def test_bad_arguments_are_refused(tmp_path):
    result = run("--pipeline", "x", "--num_inference_steps", "0", "--output_dir", str(tmp_path))
    assert result.returncode == 2 and "--num_inference_steps" in result.stderr
    result = run("--pipeline", "x", "--cfg_plus_plus_scales", "1.5", "--output_dir", str(tmp_path))
    assert result.returncode == 2 and "--cfg_plus_plus_scales must lie in [0, 1]" in result.stderr
