"""The web UI: top bar (language, model, method, checkpoint, quantization, template, RoPE, booster) over the
Train, Evaluate & Predict, Chat, Export and Past runs tabs.

    tuneforge webui [--host 127.0.0.1] [--port 7860] [--share] [--output-root saves]
                    [--auth-file FILE | --auth user:password] [--insecure-no-auth]
                    [--allowed-root DIR ...] [--allow-key trust_remote_code]

GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured when --host / --port are not given. Who may log in:
serving.py; which folders and keys the handlers may use: access.py.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from . import chat_tab, locales, models, other_tabs, runs, train_tab
from .access import Access
from .jobs import JOBS
from .serving import DEFAULT_PORT, Exposure, check_exposure, exposure_from
from .widgets import Page

CSS = (".tf-trained { background: #bfe8c8; } #tf-preview pre { white-space: pre-wrap; flex: 1; } "
       "#tf-preview .tf-row { display: flex; gap: 12px; align-items: flex-start; } "
       "#tf-preview .tf-thumb { margin: 0 0 8px 0; font-size: 0.8em; max-width: 160px; }")


def build_app(output_root: str = "saves", lang: str = "en", access: Access | None = None) -> tuple[gr.Blocks, Page]:
    page = Page(output_root, lang, access)
    JOBS.adopt(output_root)  # jobs an earlier server started and that still run
    with gr.Blocks(title="tuneforge") as app:
        lang_box = gr.Dropdown(choices=list(locales.LANGS), value=lang, label=locales.label("ui_lang", lang),
                               elem_id="tf-ui_lang", scale=0)
        top = _top_bar(page)
        with page.text("tab_train", gr.Tab, elem_id="tf-tab-train"):
            train_tab.build(page, top)
        with page.text("tab_eval", gr.Tab, elem_id="tf-tab-eval"):
            other_tabs.build_eval(page, top)
        with page.text("tab_chat", gr.Tab, elem_id="tf-tab-chat"):
            chat_tab.build(page, top)
        with page.text("tab_export", gr.Tab, elem_id="tf-tab-export"):
            other_tabs.build_export(page, top)
        with page.text("tab_runs", gr.Tab, elem_id="tf-tab-runs"):
            other_tabs.build_runs(page)
        labelled = page.labelled_components()
        lang_box.change(lambda choice: [gr.update(label=locales.label("ui_lang", choice)), *page.relabel(choice)],
                        lang_box, [lang_box, *labelled])
        for function, outputs in page.on_load:
            app.load(function, None, outputs)
    return app, page


def _top_bar(page: Page) -> dict[str, Any]:
    top: dict[str, Any] = {}
    with gr.Row():
        for name in locales.TOP_FIELDS[:4]:
            top[name] = page.field(name, **_top_options(name))
    with gr.Row():
        for name in locales.TOP_FIELDS[4:]:
            top[name] = page.field(name, **_top_options(name))

    def on_model_name(name: str, path: str, template: str) -> tuple[dict[str, Any], dict[str, Any]]:
        hub_id, default_template = models.model_defaults(name)
        return (gr.update(value=hub_id) if hub_id else gr.update(value=path),
                gr.update(value=default_template) if default_template else gr.update(value=template))

    top["model_name"].change(on_model_name, [top["model_name"], top["model_name_or_path"], top["template"]],
                             [top["model_name_or_path"], top["template"]])

    def list_checkpoints() -> dict[str, Any]:  # runs finished since the page was built are offered too
        return gr.update(choices=runs.find_checkpoints(page.output_root))

    top["finetuning_type"].change(list_checkpoints, None, top["checkpoint_path"])
    top["checkpoint_path"].focus(list_checkpoints, None, top["checkpoint_path"])
    return top


def _top_options(name: str) -> dict[str, Any]:
    if name == "template":
        from ..data import template_names

        return {"choices": sorted(template_names())}
    return {}


def launch(host: str | None = None, port: int | None = None, share: bool = False, output_root: str = "saves", *,
           auth: str | None = None, auth_file: str | None = None, insecure_no_auth: bool = False,
           allowed_roots: tuple[str, ...] = (), allowed_keys: tuple[str, ...] = ()) -> None:
    """Serve until interrupted (the CLI's `tuneforge webui`). Refused before anything is built when the page
    would be reachable from other machines without a login (serving.check_exposure)."""
    exposure = exposure_from(host, share, auth, auth_file)
    check_exposure(exposure, insecure_no_auth)
    access = Access.default(output_root, allowed_roots, allowed_keys)
    port = port or int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    app, _ = build_app(output_root, access=access)
    serve(app, exposure, port)


def serve(app: gr.Blocks, exposure: Exposure, port: int, **gradio_options: Any) -> Any:
    """Start Gradio's server for `app`: Gradio then asks for a login on the page and on every API call."""
    return app.queue().launch(server_name=exposure.host, server_port=port, share=exposure.share, css=CSS,
                              inbrowser=False, auth=list(exposure.logins) or None,
                              auth_message="tuneforge: log in" if exposure.logins else None, **gradio_options)

