"""Argument checks shared by the schedulers and the pipelines: fail early, name the argument."""

import math
import numbers
from collections.abc import Iterable


def check_choice(argument: str, value, allowed: Iterable) -> None:
    """Raise `ValueError` unless `value` is one of `allowed`, naming the argument and the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"`{argument}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def check_range(argument: str, value, low=None, high=None, low_open=False, high_open=False, integer=False,
                allow_inf=False) -> None:  # fmt: skip
    """Raise `ValueError` unless `value` is a real number (an integer where `integer`) with `low <= value <= high`
    (with `<` on an open end; `None` leaves that end free). NaN lies in no interval, and infinity only where
    `allow_inf`; strings, booleans and other types are refused rather than compared."""
    if hasattr(value, "numel") and value.numel() == 1:  # a one-element tensor
        value = value.item()
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise ValueError(f"`{argument}` must be {kind}; got {value!r} ({type(value).__name__}).")
    if value != value or (math.isinf(value) and not allow_inf):  # NaN compares false with everything
        raise ValueError(f"`{argument}` must be a finite number; got {value!r}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"`{argument}` must lie in {interval}; got {value!r}.")
