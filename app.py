"""guided-diffusers demo: DDPM, DDIM, classifier-free and classifier guidance, and dynamic thresholding on our
own models, as a Gradio app (a Hugging Face Space).

    python app.py                                 # the models in checkpoints/
    python app.py --models path/a,user/hub-repo   # folders or Hub ids; also GUIDED_DIFFUSERS_MODELS

The page is built in `space/` (models.py: what is served; controls.py: checks, progress, Stop, per-request files;
actions.py and inversion_actions.py: what each button does, over the library's public API; layout.py: the tabs).
"""

import argparse
import logging
import os

import torch

from space.layout import CSS, build_demo
from space.models import load_models

MAX_UPLOAD = "2mb"  # an upload is one small image
QUEUE_SIZE, CONCURRENCY = 32, 2  # the 2-core CPU runs two requests at a time


def launch(demo, **kwargs):
    """The queue and limits every launch uses (the tests' too)."""
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo.launch(max_file_size=MAX_UPLOAD, show_error=True, css=CSS, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=os.environ.get("GUIDED_DIFFUSERS_MODELS", "checkpoints"))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # a 2-core CPU Space
    launch(build_demo(load_models(args.models)), server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
