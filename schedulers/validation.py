"""Argument checks shared by the schedulers (and later the pipelines): fail early, name the argument."""

from collections.abc import Iterable


def check_choice(argument: str, value, allowed: Iterable) -> None:
    """Raise `ValueError` unless `value` is one of `allowed`, naming the argument and the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"`{argument}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def check_range(argument: str, value, low=None, high=None, low_open=False, high_open=False) -> None:
    """Raise `ValueError` unless `low <= value <= high` (with `<` on an open end); `None` leaves that end free.
    NaN lies in no interval."""
    if value != value:  # NaN compares false with everything, so it would pass both bounds
        raise ValueError(f"`{argument}` must be a number; got {value!r}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"`{argument}` must lie in {interval}; got {value!r}.")
