"""What every action shares: server-side checks with messages a person understands, the cost cap of one request,
per-step progress with Stop, and per-request files."""

import functools
import inspect
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from .models import UNCONDITIONAL, ServedModel
from .pictures import with_headroom

MAX_STEPS, MAX_BATCH, MAX_SEED, MAX_INVERSION_STEPS = 1000, 16, 2**31 - 1, 250
# the most image evaluations (UNet passes x images) one request may cost: about a minute on the 2-core CPU, so one
# visitor cannot hold the demo (a 1,000-step batch of 16 with CFG would be 32,000, about 400 s)
MAX_IMAGE_EVALUATIONS = 6000
REQUEST_FILES_TTL = 15 * 60  # seconds a request's output files live (Gradio copies them into its own cache)
logger = logging.getLogger("guided_diffusers.space")


# ------------------------------------------------------------------------------------------ errors
def refuse(message: str) -> gr.Error:
    """An input error: shown to the user, logged as one line (no traceback: nothing is broken)."""
    logger.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def user_facing(action):
    """Every error of `action` reaches the user as a sentence: the library's ValueError / TypeError messages name
    the argument and what is allowed; anything else is logged with its traceback and named by its type."""

    def translated(error):
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, (ValueError, TypeError)):
            return refuse(str(error))
        if isinstance(error, Stopped):
            return gr.Error("Stopped.", print_exception=False)
        logger.exception("unexpected error in %s", action.__name__)
        return gr.Error(f"Something went wrong ({type(error).__name__}: {error}); the log has the details.")

    if inspect.isgeneratorfunction(action):
        @functools.wraps(action)
        def stream(*args, **kwargs):
            try:
                yield from action(*args, **kwargs)
            except Exception as error:  # noqa: BLE001
                raise translated(error) from error
        return stream

    @functools.wraps(action)
    def run(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            raise translated(error) from error
    return run


# ------------------------------------------------------------------------------------------ checks
def number(value, name: str, low: float, high: float, integer: bool = False):
    """A control's value checked on the server: a number (strings of numbers too, as API clients send them),
    finite, within [low, high], whole where asked."""
    kind = "a whole number" if integer else "a number"
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise refuse(f"{name} must be {kind} between {low:g} and {high:g}; got {value!r}.") from None
    if not math.isfinite(parsed) or not low <= parsed <= high or (integer and parsed != int(parsed)):
        raise refuse(f"{name} must be {kind} between {low:g} and {high:g}; got {value!r}.")
    return int(parsed) if integer else parsed


def choice(value, name: str, allowed) -> str:
    if value not in allowed:
        raise refuse(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}.")
    return value


def pick(models: dict, name, kind: str = "class") -> ServedModel:
    """The served model called `name` of the kind the action needs ("class", "text" or "cascade")."""
    names = [n for n, model in models.items() if model.kind == kind]
    return models[choice(name, "model", names)]


def class_index(model: ServedModel, label) -> int | None:
    """A class given by name or index (as the API may send either) -> its index; None for unconditional."""
    names, text = model.class_names, str(label).strip() if label is not None else UNCONDITIONAL
    if text == UNCONDITIONAL and model.has_null_class:
        return None
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    allowed = ", ".join(f"{i} ({n})" if n != str(i) else n for i, n in enumerate(names))
    extra = f" or '{UNCONDITIONAL}'" if model.has_null_class else ""
    raise refuse(f"class for {model.name} must be one of {allowed}{extra} (a name or its index); got {label!r}.")


def check_cost(steps: int, images: int, passes: int, what: str = "This request") -> None:
    """Refuse a request whose UNet work (steps x images x passes per step) is over the cap, before any work."""
    cost = steps * images * passes
    if cost > MAX_IMAGE_EVALUATIONS:
        raise refuse(f"{what} needs {cost:,} image evaluations ({steps} steps x {images} images x {passes} passes); "
                     f"the demo allows {MAX_IMAGE_EVALUATIONS:,}: use fewer steps or images.")  # fmt: skip


# ---------------------------------------------------------------------------------- progress and Stop
class Stopped(Exception):
    """The visitor pressed Stop: the run ends at its next step."""


_stop_requests: dict[str, float] = {}
_running: dict[str, int] = {}
_lock = threading.Lock()


def session_of(request) -> str:
    return getattr(request, "session_hash", None) or "local"


def request_stop(request: gr.Request = None):
    """Stop's handler: the session's running action stops at its next step (Gradio's cancel alone would only
    drop the result while the thread kept the CPU busy)."""
    _stop_requests[session_of(request)] = time.monotonic()


class Steps:
    """Progress over every denoising step of one action (several runs count as one bar): "step i of n" with the
    elapsed time, and a check for Stop at each step. Passed to the pipelines as `callback_on_step_end`
    (`Steps.callback`), or ticked by a loop over `iterate`."""

    def __init__(self, progress, request, total: int, what: str = "step"):
        self.progress, self.session, self.total, self.what = progress, session_of(request), max(total, 1), what
        self.done, self.started = 0, time.monotonic()

    def callback(self, pipe, step, timestep, tensors):
        self.tick()

    def tick(self):
        if _stop_requests.get(self.session, 0) > self.started:
            raise Stopped()
        self.done += 1
        if self.progress is not None:
            elapsed = time.monotonic() - self.started
            self.progress((min(self.done, self.total), self.total), desc=f"{self.what} {self.done} of {self.total}, "
                                                                        f"{elapsed:.0f} s", unit="steps")  # fmt: skip


class one_run_per_visitor:
    """A visitor (a browser session or an API client) runs one action at a time; a second is refused at once."""

    def __init__(self, request):
        self.session = session_of(request)

    def __enter__(self):
        with _lock:
            if _running.get(self.session, 0) and self.session != "local":
                raise refuse("You already have a run in progress: wait for it or press Stop.")
            _running[self.session] = _running.get(self.session, 0) + 1

    def __exit__(self, *exc):
        with _lock:
            _running[self.session] -= 1


# ------------------------------------------------------------------------------------ request files
def files_root() -> Path:
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "guided-diffusers-requests"
    root.mkdir(parents=True, exist_ok=True)
    return root


def request_folder() -> Path:
    """A fresh folder for one request's files (two requests never share a file name), after removing folders of
    requests older than REQUEST_FILES_TTL (Gradio has copied their files into its cache by then)."""
    root, now = files_root(), time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > REQUEST_FILES_TTL:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another request removed it first
            continue
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))


def saved(image, folder: Path, name: str, headroom: bool = True) -> str:
    """A PIL image written as PNG into the request's folder (with a band on top for the app's label and toolbar,
    unless it is a download); its path (Gradio serves files, not update dicts)."""
    path = folder / f"{name}.png"
    (with_headroom(image) if headroom else image).save(path)
    return str(path)
