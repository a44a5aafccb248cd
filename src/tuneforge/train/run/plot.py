"""`plot_loss`: draw training_loss.png (and training_eval_loss.png) from the run's trainer_log.jsonl."""

from __future__ import annotations

import importlib.util
import math
import os

from ...errors import ConfigError
from .callbacks import read_trainer_log


def check_plotting_available() -> None:
    """Called before training so a missing package does not surface after hours of work."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("plot_loss: true needs matplotlib: pip install matplotlib (or set plot_loss: false)")


def plot_loss(output_dir: str, keys: tuple[str, ...] = ("loss", "eval_loss")) -> list[str]:
    """Write one PNG per key that has values; return the written paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    records = read_trainer_log(output_dir)
    written = []
    for key in keys:
        points = [(record["step"], record[key]) for record in records if key in record]
        if not points:
            continue
        steps, values = zip(*points)
        figure = plt.figure()
        plt.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
        plt.plot(steps, smooth(list(values)), color="#1f77b4", label="smoothed")
        plt.title(f"training {key} of {output_dir}")
        plt.xlabel("step")
        plt.ylabel(key)
        plt.legend()
        path = os.path.join(output_dir, f"training_{key.replace('/', '_')}.png")  # rewards/accuracies
        figure.savefig(path, format="png", dpi=100)
        plt.close(figure)
        written.append(path)
        print(f"Loss curve saved to {path}")
    return written


def smooth(values: list[float]) -> list[float]:
    """Exponential moving average whose weight grows with the curve length (LLaMA-Factory's curve shape)."""
    if not values:
        return []
    weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    smoothed, last = [], values[0]
    for value in values:
        last = last * weight + (1 - weight) * value
        smoothed.append(last)
    return smoothed
