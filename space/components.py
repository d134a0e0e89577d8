"""Gradio's Slider and Number, checked by the actions instead of by Gradio: their own preprocessing would round a
whole-number control silently (2.5 steps -> 2), judge the steps against the first sampler's maximum whatever the
sampler, and answer a value such as "abc" with an internal error and a traceback in the log. Here a value passes
through as a number, or is refused with the control's name; the actions check the range."""

import math

import gradio as gr

from .controls import refuse


def as_number(component, payload):
    if payload is None or isinstance(payload, bool):
        raise refuse(f"{component.label} must be a number; got {payload!r}.")
    if isinstance(payload, (int, float)):
        return payload
    try:
        value = float(str(payload).strip())
    except ValueError:
        raise refuse(f"{component.label} must be a number; got {payload!r}.") from None
    return int(value) if component.precision == 0 and math.isfinite(value) and value == int(value) else value


class Slider(gr.Slider):  # the class name is the front end's component name: keep it
    def preprocess(self, payload):
        return as_number(self, payload)


class Number(gr.Number):
    def preprocess(self, payload):
        return as_number(self, payload)
