"""What every benchmark prints with its numbers: the machine it ran on."""

import platform

import torch

from guided_diffusers.training.model_card import hardware


def machine_line() -> str:
    return f"machine: {hardware()}; torch {torch.__version__}; Python {platform.python_version()}"


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
