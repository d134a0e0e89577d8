"""The Forward-process tab's plot of the noise schedules."""

import numpy as np

from guided_diffusers.schedulers import GuidedDDPMScheduler


def schedule_plot():
    """abar_t and log SNR = log(abar_t / (1 - abar_t)) of the linear and cosine schedules."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    for schedule in ("linear", "squaredcos_cap_v2"):
        abar = GuidedDDPMScheduler(beta_schedule=schedule).alphas_cumprod.double().numpy()
        left.plot(abar, label=schedule)
        right.plot(np.log(abar / (1 - abar)), label=schedule)
    for axes, title in ((left, "abar_t"), (right, "log SNR")):
        axes.set_title(title)
        axes.set_xlabel("t")
    left.legend()
    figure.tight_layout()
    return figure
