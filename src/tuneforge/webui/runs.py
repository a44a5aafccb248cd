"""Reading run directories for the page: progress, loss curves, and the runs found under the output root.

Everything comes from the files a run writes: its trainer log (tuneforge.train.TRAINER_LOG) for step, total,
loss, elapsed and remaining; adapter/model files and `checkpoint-N/` for the checkpoint list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..train import TRAINER_LOG, read_trainer_log

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODEL_MARKERS = ("adapter_config.json", "config.json")


@dataclass
class Progress:
    step: int = 0
    total: int = 0
    elapsed: float = 0.0
    remaining: float = 0.0
    loss: float | None = None

    @property
    def percent(self) -> int:
        return int(100 * self.step / self.total) if self.total else 0


def progress_of(records: list[dict[str, Any]]) -> Progress:
    train = [record for record in records if "loss" in record]
    if not records:
        return Progress()
    last = records[-1]
    return Progress(step=int(last.get("step", 0)), total=int(last.get("total", 0)),
                    elapsed=float(last.get("elapsed", 0.0) or 0.0), remaining=float(last.get("remaining", 0.0) or 0.0),
                    loss=train[-1]["loss"] if train else None)


def loss_points(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(record["step"]), float(record["loss"])) for record in records if "loss" in record]


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def find_runs(root: str) -> list[str]:
    """Run directories under `root` (any depth): the folders holding a trainer log, newest first."""
    found: list[str] = []
    if not os.path.isdir(root):
        return found
    for folder, subfolders, files in os.walk(root):
        if TRAINER_LOG in files:
            found.append(folder)
        subfolders[:] = [name for name in subfolders if not name.startswith(("checkpoint-", "."))]
    return sorted(found, key=lambda path: os.path.getmtime(os.path.join(path, TRAINER_LOG)), reverse=True)


def find_checkpoints(root: str) -> list[str]:
    """Loadable results under `root`: run directories holding a final adapter or model, and their
    `checkpoint-N/` folders."""
    found: list[str] = []
    if not os.path.isdir(root):
        return found
    for folder, subfolders, files in os.walk(root):
        if any(marker in files for marker in MODEL_MARKERS):
            found.append(folder)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
    return found


def runs_figure(root: str, max_runs: int = 6) -> Figure:
    """A matplotlib figure with the loss curves of the newest runs under `root`, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(path, loss_points(read_trainer_log(path))) for path in find_runs(root)[:max_runs]]
    runs = [(path, points) for path, points in runs if points]
    count = max(len(runs), 1)
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    for axis, (path, points) in zip(axes.flat, runs):
        axis.set_visible(True)
        steps, losses = zip(*points)
        axis.plot(steps, losses, marker="." if len(steps) < 30 else None)
        axis.set_title(os.path.relpath(path, root), fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
    if not runs:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, f"no runs with a loss under {root}", ha="center", va="center")
        axes.flat[0].axis("off")
    figure.tight_layout()
    return figure


def runs_table(root: str) -> list[list[Any]]:
    """One row per run: path, steps done / total, last loss, final result present."""
    rows: list[list[Any]] = []
    for path in find_runs(root):
        progress = progress_of(read_trainer_log(path))
        done = any(os.path.exists(os.path.join(path, marker)) for marker in MODEL_MARKERS)
        rows.append([os.path.relpath(path, root), f"{progress.step}/{progress.total}",
                     None if progress.loss is None else round(progress.loss, 4), "yes" if done else "no"])
    return rows
