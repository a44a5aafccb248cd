"""The Evaluate & Predict, Export and Past runs tabs.

Evaluate & Predict and Export are forms over their parameter groups that run the CLI as a job, like
training; whatever the CLI answers (including "not implemented yet") shows in the job's log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from ..errors import UserError
from . import actions, datasets, form, job_panel, runs
from .jobs import JOBS
from .widgets import Page

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Besides its groups, the Evaluate & Predict form needs the data to predict on and where to write.
EVAL_DATA_FIELDS = ("dataset_dir", "eval_dataset", "cutoff_len", "max_samples", "per_device_eval_batch_size",
                    "output_dir")


def build_eval(page: Page, top: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        for name in EVAL_DATA_FIELDS:
            options: dict[str, Any] = {"elem_id": f"tf-eval-{name}"}
            if name == "eval_dataset":
                options["choices"], _ = datasets.dataset_names(page.params["dataset_dir"].default)
            if name == "output_dir":
                options["value"] = form.default_output_dir(page.output_root, "custom", "lora", prefix="eval")
            fields[name] = page.field(name, **options)
    _group_fields(page, ("eval", "generate"), fields, "tf-eval")
    _job_tab(page, top, fields, "eval")
    return fields


def build_export(page: Page, top: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    _group_fields(page, ("export",), fields, "tf-export")
    _job_tab(page, top, fields, "export")
    return fields


def build_runs(page: Page) -> None:
    with gr.Row():
        root = page.text("output_root", gr.Textbox, value=page.output_root, elem_id="tf-runs-root", scale=4)
        refresh = page.text("refresh", gr.Button, elem_id="tf-runs-refresh", scale=1)
    plot = gr.Plot(elem_id="tf-runs-plot")
    table = gr.Dataframe(headers=["run", "steps", "last loss", "final model"], elem_id="tf-runs-table",
                         interactive=False)

    def show(folder: str) -> tuple[Figure, list[list[Any]]]:
        try:
            page.access.check_path("output_root", folder)  # a caller of the API may name any folder
        except UserError as error:
            raise gr.Error(str(error)) from None
        return runs.runs_figure(folder), runs.runs_table(folder)

    refresh.click(show, root, [plot, table])
    page.on_load.append((lambda: show(page.output_root), [plot, table]))


def _group_fields(page: Page, groups: tuple[str, ...], fields: dict[str, Any], prefix: str) -> None:
    for group in groups:
        with gr.Accordion(group, open=True):
            with gr.Row(equal_height=False):
                for name, param in page.params.items():
                    if param.group == group and name not in fields:
                        fields[name] = page.field(name, elem_id=f"{prefix}-{name}")


def _job_tab(page: Page, top: dict[str, Any], fields: dict[str, Any], kind: str) -> None:
    names = [*top, *fields]
    inputs = [*top.values(), *fields.values()]
    with gr.Row():
        preview = page.text("preview_cmd", gr.Button, elem_id=f"tf-{kind}-preview-cmd")
    message = gr.Markdown("", elem_id=f"tf-{kind}-message")
    command_box = gr.Code("", language="yaml", label="YAML", visible=False, elem_id=f"tf-{kind}-yaml")
    outputs, start, abort = job_panel.build(page, kind, with_plot=False)

    def on_preview(*args: Any) -> tuple[dict[str, Any], str]:
        try:
            yaml_text, command = actions.preview_command(dict(zip(names, args)), page.params, kind, page.access)
        except UserError as error:
            return gr.update(), actions.error_text(error)
        return gr.update(value=yaml_text, visible=True), f"`{command}`"

    preview.click(on_preview, inputs, [command_box, message])

    def on_start(*args: Any) -> list[Any]:
        try:
            job = actions.start_job(dict(zip(names, args)), page.params, kind, page.access)
        except UserError as error:
            return [actions.error_text(error), *job_panel.refresh(kind, False)]
        return [f"started: `{' '.join(job.command[2:])}`", *job_panel.refresh(kind, False)]

    start.click(on_start, inputs, [message, *outputs])

    def on_abort() -> list[Any]:
        job = JOBS.abort(kind)
        return ["no job" if job is None else f"{kind} job {job.status}", *job_panel.refresh(kind, False)]

    abort.click(on_abort, None, [message, *outputs])
    job_panel.watch(kind, False, outputs, page.on_load)
