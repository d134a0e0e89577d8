"""Running the project's scripts as users do: a subprocess, offline, one thread, output captured."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_script(script: str, *args, check: bool = True, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    """`python <script> args...` from the repository root's `training/` etc.; raises with the stderr tail on failure
    when `check`."""
    result = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], env=ENV, capture_output=True,
                            text=True, timeout=timeout, **kwargs)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result
