"""The Train tab: the seed's sections, every other declared parameter, the run buttons and the job panel.

Sections and their seed fields come from locales.TRAIN_SECTIONS; a panel section (freeze, LoRA, RLHF,
GaLore, BAdam) also holds the rest of its parameter group (RLHF also the rollout sampling settings of group
generate, which ppo and grpo read); every parameter placed nowhere else lands in
"Other parameters", one accordion per group. Nothing here names a parameter the seed does not.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..config import Param, all_params
from ..errors import UserError
from . import actions, datasets, form, job_panel, locales
from .jobs import JOBS
from .widgets import Page

PANEL_SECTIONS = ("freeze", "lora", "rlhf", "galore", "badam")
# PPO and GRPO sample their rollouts with the generation settings (temperature, top_p, top_k, max_new_tokens,
# ...): the RLHF panel shows that group too, so a training job started here passes what the user set.
ROLLOUT_GROUP = "generate"
# Groups that have their own tab (generation settings, evaluation, export, inference).
OTHER_TAB_GROUPS = ("generate", "eval", "export", "infer")


def build(page: Page, top: dict[str, Any]) -> dict[str, Any]:
    """Lay out the tab; returns its fields (name -> component)."""
    fields: dict[str, Any] = {}
    placed = set(top) | set(form.COVERED) | set(locales.OUTPUT_FIELDS)
    for section, _, _, names in locales.TRAIN_SECTIONS:
        placed |= set(names)
    for section, _, _, names in locales.TRAIN_SECTIONS:
        with page.text(f"section_{section}", gr.Accordion, open=section in ("basic", "extra")):
            with gr.Row(equal_height=False):
                for name in names:
                    fields[name] = page.field(name, **_field_options(page, name))
            if section in PANEL_SECTIONS:
                rest = [name for name, param in page.params.items() if param.group == section and name not in placed]
                placed |= set(rest)
                _grid(page, rest, fields, "more")
            if section == "rlhf":
                rollout = [name for name, param in page.params.items() if param.group == ROLLOUT_GROUP]
                placed |= set(rollout)
                _grid(page, rollout, fields, "rollout")
    with page.text("other", gr.Accordion, open=False):
        for group in page.groups:
            if group in OTHER_TAB_GROUPS:
                continue
            rest = [name for name, param in _own_params().items() if param.group == group and name not in placed]
            if rest:
                placed |= set(rest)
                with gr.Accordion(group, open=False):
                    with gr.Row(equal_height=False):
                        for name in rest:
                            fields[name] = page.field(name)
        fields["extra_args"] = page.field("extra_args")
    with gr.Row():
        for name in locales.OUTPUT_FIELDS:
            fields[name] = page.field(name)
    with gr.Row():
        preview_data = page.text("preview_data", gr.Button, elem_id="tf-preview-data")
        preview_cmd = page.text("preview_cmd", gr.Button, elem_id="tf-preview-cmd")
        save = page.text("save_cfg", gr.Button, elem_id="tf-save-config")
        load = page.text("load_cfg", gr.Button, elem_id="tf-load-config")
    message = gr.Markdown("", elem_id="tf-train-message")
    preview = gr.HTML("", elem_id="tf-train-preview")
    with gr.Row():
        yaml_box = gr.Code("", language="yaml", label="YAML", elem_id="tf-train-yaml", visible=False)
        command_box = page.text("command", gr.Textbox, elem_id="tf-train-command", visible=False, interactive=False)
    outputs, start, abort = job_panel.build(page, "train", with_plot=True)
    ui = dict(message=message, preview=preview, yaml_box=yaml_box, command_box=command_box, outputs=outputs,
              preview_data=preview_data, preview_cmd=preview_cmd, save=save, load=load, start=start, abort=abort)
    _wire(page, top, fields, ui)
    return fields


def _own_params() -> dict[str, Param]:
    """tuneforge's declarations (transformers' own training arguments beyond the seed go in extra args)."""
    return all_params()


def _grid(page: Page, names: list[str], fields: dict[str, Any], title: str) -> None:
    if not names:
        return
    with page.text(title, gr.Accordion, open=False):
        with gr.Row(equal_height=False):
            for name in names:
                fields[name] = page.field(name)


def _field_options(page: Page, name: str) -> dict[str, Any]:
    if name == "dataset":
        names, _ = datasets.dataset_names(page.params["dataset_dir"].default, page.params["stage"].default)
        return {"choices": names}
    if name == "output_dir":
        return {"value": form.default_output_dir(page.output_root, "custom", "lora")}
    return {}


def _wire(page: Page, top: dict[str, Any], fields: dict[str, Any], ui: dict[str, Any]) -> None:
    names = [*top, *fields]
    inputs = [*top.values(), *fields.values()]

    def values_of(args: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(names, args))

    def on_dataset_dir(dataset_dir: str, stage: str, chosen: list[str] | None) -> tuple[dict[str, Any], str]:
        try:
            page.access.check_path("dataset_dir", dataset_dir or "data")
        except UserError as error:
            return gr.update(choices=[], value=[]), actions.error_text(error)
        choices, problem = datasets.dataset_names(dataset_dir, stage)
        keep = [name for name in (chosen or []) if name in choices]
        return gr.update(choices=choices, value=keep), (f"⚠ {problem}" if problem else "")

    for trigger in (fields["dataset_dir"].change, fields["stage"].change):
        trigger(on_dataset_dir, [fields["dataset_dir"], fields["stage"], fields["dataset"]],
                [fields["dataset"], ui["message"]])

    def on_preview_data(*args: Any) -> tuple[dict[str, Any], str]:
        values = values_of(args)
        try:
            config = actions.build_config(values, page.params, "train", page.access)
            cfg = actions.validated_config({**config, "do_train": False}, data_only=True)
        except UserError as error:  # the configuration's problems, all at once
            return gr.update(value=""), actions.error_text(error)
        try:
            return gr.update(value=datasets.preview_html(cfg, n=2)), ""
        except Exception as error:  # noqa: BLE001  (shown to the user; the page must keep working)
            return gr.update(value=""), f"⚠ preview failed: {error}"

    ui["preview_data"].click(on_preview_data, inputs, [ui["preview"], ui["message"]])

    def on_preview_cmd(*args: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
        try:
            yaml_text, command = actions.preview_command(values_of(args), page.params, "train", page.access)
        except UserError as error:
            return gr.update(), gr.update(), actions.error_text(error)
        return gr.update(value=yaml_text, visible=True), gr.update(value=command, visible=True), ""

    ui["preview_cmd"].click(on_preview_cmd, inputs, [ui["yaml_box"], ui["command_box"], ui["message"]])

    def on_save(*args: Any) -> str:
        values = values_of(args)
        try:
            return actions.save_config(values, page.params, values["config_path"], page.access)
        except UserError as error:
            return actions.error_text(error)

    ui["save"].click(on_save, inputs, ui["message"])

    def on_load(*args: Any) -> list[Any]:
        values = values_of(args)
        try:
            loaded = actions.load_config(values["config_path"], names, page.params, page.access)
        except (UserError, ValueError, OSError) as error:
            return [gr.update()] * len(inputs) + [f"⚠ {error}"]
        if loaded.get("dataset"):  # a dataset the picker does not list yet is still shown
            choices, _ = datasets.dataset_names(loaded.get("dataset_dir"), None)
            loaded["dataset"] = gr.update(choices=sorted(set(choices) | set(loaded["dataset"])),
                                          value=loaded["dataset"])
        return [loaded.get(name, gr.update()) for name in names] + [f"loaded {values['config_path']}"]

    ui["load"].click(on_load, inputs, [*inputs, ui["message"]])

    def on_start(*args: Any) -> list[Any]:
        try:
            job = actions.start_job(values_of(args), page.params, "train", page.access)
        except UserError as error:  # a ConfigError lists every problem of the form
            return [actions.error_text(error), *job_panel.refresh("train", True)]
        return [f"started: `{' '.join(job.command[2:])}`", *job_panel.refresh("train", True)]

    ui["start"].click(on_start, inputs, [ui["message"], *ui["outputs"]])

    def on_abort() -> list[Any]:
        job = JOBS.abort("train")
        note = "no training job" if job is None else f"training job {job.status}"
        return [note, *job_panel.refresh("train", True)]

    ui["abort"].click(on_abort, None, [ui["message"], *ui["outputs"]])
    job_panel.watch("train", True, ui["outputs"], page.on_load)
