"""The README's main command keeps working: the exact-denoiser example samples real digits."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_exact_denoiser_example_reproduces_dataset_digits(tmp_path):
    output = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "sample_exact_denoiser.py"), "--num_inference_steps", "10",
         "--per_class", "1", "--output", str(output)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert output.is_file()
    rows = re.findall(r"^(DDIM|DDPM)\S* .*?\s+([\d.]+)\s+(\d+)%$", result.stdout, flags=re.M)
    assert len(rows) == 2
    for _, nearest_distance, class_agreement in rows:  # the ideal denoiser lands on dataset images
        assert float(nearest_distance) < 0.5 and int(class_agreement) == 100
