"""The panel that follows a job: progress bar, log tail and (for training) the live loss curve.

It is refreshed by a timer while a page is open and when a page (re)opens, always from the job registry
and the run directory, never from browser state: a page opened after the browser was closed shows the
same job, and the job never waits for a page.
"""

from __future__ import annotations

import html
import os
from typing import Any

import gradio as gr
import pandas as pd

from . import runs
from .jobs import JOBS, Job
from .widgets import OnLoad, Page


def build(page: Page, kind: str, with_plot: bool) -> tuple[list[Any], Any, Any]:
    """(outputs refreshed by `refresh`, start button, abort button)."""
    with gr.Row():
        start = page.text("start", gr.Button, variant="primary", elem_id=f"tf-{kind}-start")
        abort = page.text("abort", gr.Button, variant="stop", elem_id=f"tf-{kind}-abort")
    progress = gr.HTML(progress_html(None, kind), elem_id=f"tf-{kind}-progress")
    with gr.Row():
        log = page.text("log", gr.Textbox, lines=12, max_lines=12, autoscroll=True, interactive=False,
                        elem_id=f"tf-{kind}-log", scale=3 if with_plot else 1)
        outputs: list[Any] = [progress, log]
        if with_plot:
            plot = gr.LinePlot(_empty_frame(), x="step", y="loss", label="loss", elem_id=f"tf-{kind}-loss", scale=2)
            outputs.append(plot)
    return outputs, start, abort


def watch(kind: str, with_plot: bool, outputs: list[Any], on_load: list[OnLoad]) -> None:
    """Refresh `outputs` every second while a page is open, and when a page opens. A tick that finds
    nothing new sends nothing (the browser would otherwise redraw the plot every second, taking CPU
    from the training it watches); what a page last saw is kept in its own session state."""
    seen = gr.State(None)
    timer = gr.Timer(1.0)

    def tick(last: Any) -> list[Any]:
        now = signature(kind)
        if now == last:
            return [gr.skip()] * len(outputs) + [last]
        return [*refresh(kind, with_plot), now]

    timer.tick(tick, seen, [*outputs, seen], show_progress="hidden")
    on_load.append((lambda: refresh(kind, with_plot), outputs))


def signature(kind: str) -> tuple[Any, ...] | None:
    """Changes whenever what the panel shows would change."""
    job = JOBS.get(kind)
    if job is None:
        return None
    sizes = []
    for path in (job.console_log, os.path.join(job.output_dir, runs.TRAINER_LOG)):
        try:
            sizes.append(os.path.getsize(path))
        except OSError:
            sizes.append(-1)
    return (id(job), job.status, *sizes)


def refresh(kind: str, with_plot: bool) -> list[Any]:
    job = JOBS.get(kind)
    values: list[Any] = [progress_html(job, kind), _log_text(job)]
    if with_plot:
        points = runs.loss_points(runs.read_trainer_log(job.output_dir)) if job else []
        values.append(pd.DataFrame(points, columns=["step", "loss"]) if points else _empty_frame())
    return values


def progress_html(job: Job | None, kind: str) -> str:
    if job is None:
        return f"<div id='tf-{kind}-status' data-status='idle'>no {kind} job yet</div>"
    status = job.status
    progress = runs.progress_of(runs.read_trainer_log(job.output_dir))
    percent = progress.percent
    if status == "finished" and kind == "train" and progress.total and progress.step >= progress.total:
        percent = 100
    detail = (f"step {progress.step}/{progress.total} · {percent}% · elapsed "
              f"{runs.format_seconds(progress.elapsed)} · remaining {runs.format_seconds(progress.remaining)}"
              if progress.total else "starting…" if status == "running" else "")
    loss = f" · loss {progress.loss:.4f}" if progress.loss is not None else ""
    return (f"<div id='tf-{kind}-status' data-status='{html.escape(status.split(' ')[0])}' data-percent='{percent}'>"
            f"<b>{html.escape(kind)}: {html.escape(status)}</b> — {html.escape(job.output_dir)}<br>"
            f"<div style='background:#ddd;border-radius:4px;height:14px;width:100%'>"
            f"<div style='background:#4a8;height:14px;border-radius:4px;width:{percent}%'></div></div>"
            f"<span class='tf-progress-text'>{detail}{loss}</span></div>")


def _log_text(job: Job | None) -> str:
    return "" if job is None else job.console_tail()


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"step": pd.Series([], dtype="int64"), "loss": pd.Series([], dtype="float64")})
