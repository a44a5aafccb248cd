"""Gradio components for fields, built from the parameter declarations, and the page's label registry.

`Page.field(name)` makes the component for a parameter (or a page-only field) with its label in the
page language and its declared help as the hint. Parameters whose feature has not landed yet are shown
disabled with a "coming" hint, so the page says what exists without offering what would be refused.
Every labelled component is remembered, so switching the language relabels the whole page at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gradio as gr

from ..config import GROUPS, Param, all_params, hf_params
from . import form, locales, models, runs
from .access import Access

MIN_WIDTH = 220  # fields wrap onto new lines instead of squeezing (a row of checkboxes would be unreadable)
# (function, the components it fills) run when a page opens.
OnLoad = tuple[Callable[[], Any], list[Any]]


class Page:
    def __init__(self, output_root: str, lang: str = "en", access: Access | None = None) -> None:
        self.output_root = output_root
        # What the handlers may read, write and set (every handler is also an HTTP endpoint).
        self.access = access or Access.default(output_root)
        self.lang = lang
        self.params: dict[str, Param] = {**hf_params(), **all_params()}
        self.groups: tuple[str, ...] = GROUPS  # the parameter groups, in the order the page shows them
        self._labelled: list[tuple[Any, str, str]] = []  # (component, key, "field" | "text")
        # Run when a page opens: they show the jobs that are already running.
        self.on_load: list[OnLoad] = []

    # ---- components ------------------------------------------------------------------------------

    def field(self, name: str, **overrides: Any) -> Any:
        """The component editing `name` (a parameter or a form.PAGE_FIELDS entry)."""
        component = self._page_field(name, **overrides) if name in form.PAGE_FIELDS else self._param_field(
            self.params[name], **overrides)
        self._labelled.append((component, name, "field"))
        return component

    def text(self, key: str, factory: Any, **kwargs: Any) -> Any:
        """A component labelled with one of the page's own words (locales.TEXT)."""
        name = "value" if factory is gr.Button else "label"
        component = factory(**{name: locales.text(key, self.lang)}, **kwargs)
        self._labelled.append((component, key, "text"))
        return component

    def hint(self, name: str) -> str | None:
        param = self.params.get(name)
        if param is None:
            return None
        hint = param.help
        if not param.implemented:
            hint = f"({locales.text('coming', self.lang)}) {hint}"
        return hint

    def _param_field(self, param: Param, **overrides: Any) -> Any:
        widget = form.widget_for(param)
        common: dict[str, Any] = dict(label=locales.label(param.name, self.lang), info=self.hint(param.name),
                                      interactive=param.implemented, elem_id=f"tf-{param.name}", min_width=MIN_WIDTH)
        value = overrides.pop("value", widget.value)
        choices = overrides.pop("choices", None)
        common.update(overrides)
        if choices is not None and widget.type == "text":  # a free-text parameter offered a list to pick from
            return gr.Dropdown(choices=[form.NONE, *choices], value=value or form.NONE, allow_custom_value=True,
                               **common)
        if choices is not None:
            widget = form.Widget("dropdown", value, tuple(choices), widget.multiselect, custom=True)
        if widget.type == "checkbox":
            return gr.Checkbox(value=value, **common)
        if widget.type == "number":
            return gr.Number(value=value, precision=0 if widget.integer else None, **common)
        if widget.type == "dropdown":
            return gr.Dropdown(choices=list(widget.choices or ()), value=value, multiselect=widget.multiselect,
                               allow_custom_value=widget.custom, **common)
        return gr.Textbox(value=value, lines=widget.lines, **common)

    def _page_field(self, name: str, **overrides: Any) -> Any:
        common: dict[str, Any] = dict(label=locales.label(name, self.lang), elem_id=f"tf-{name}", min_width=MIN_WIDTH)
        value = overrides.pop("value", form.PAGE_FIELDS[name])
        common.update(overrides)
        if name == "model_name":
            return gr.Dropdown(choices=models.model_choices(), value=value, allow_custom_value=True, **common)
        if name == "checkpoint_path":
            return gr.Dropdown(choices=runs.find_checkpoints(self.output_root), value=value, multiselect=True,
                               allow_custom_value=True, **common)
        if name == "compute_type":
            return gr.Dropdown(choices=list(form.COMPUTE_TYPES), value=value, **common)
        if name == "booster":
            return gr.Dropdown(choices=list(form.BOOSTERS), value=value, **common)
        if name == "ds_stage":
            return gr.Dropdown(choices=list(form.DS_STAGES), value=value, **common)
        if name == "ds_offload":
            return gr.Checkbox(value=value, **common)
        if name == "device_count":
            # Sets NPROC_PER_NODE for the training subprocess (train/launch.py relaunches under torchrun).
            return gr.Number(value=_device_count(), minimum=1, precision=0, **common)
        if name == "config_path":
            return gr.Textbox(value=value or os.path.join(self.output_root, "webui_config.yaml"), **common)
        return gr.Textbox(value=value, lines=3, **common)  # extra_args

    # ---- language ---------------------------------------------------------------------------------

    def labelled_components(self) -> list[Any]:
        return [component for component, _, _ in self._labelled]

    def relabel(self, lang: str) -> list[Any]:
        """Updates giving every labelled component its label in `lang`."""
        self.lang = lang
        updates = []
        for component, key, kind in self._labelled:
            if kind == "text":
                words = locales.text(key, lang)
                updates.append(gr.update(value=words) if isinstance(component, gr.Button) else gr.update(label=words))
            elif key in self.params:
                updates.append(gr.update(label=locales.label(key, lang), info=self.hint(key)))
            else:
                updates.append(gr.update(label=locales.label(key, lang)))
        return updates

    def labels(self) -> dict[str, str]:
        """field or text key -> its label now (for tests that look for fields by label)."""
        return {key: (locales.text(key, self.lang) if kind == "text" else locales.label(key, self.lang))
                for _, key, kind in self._labelled}


def _device_count() -> int:
    """Accelerators visible to training (the CPU counts as one); torch is imported only if already loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return len([item for item in visible.split(",") if item.strip()]) if visible else 1
