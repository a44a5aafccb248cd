"""The Chat tab: load / unload the top bar's model (+ checkpoint adapters) through infer.ChatEngine and talk
to it with streaming, a system prompt, tools and the generation settings of the `generate` group."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from ..data import PLACEHOLDERS
from ..errors import UserError
from . import actions
from .form import decode
from .widgets import Page

if TYPE_CHECKING:
    from ..infer import ChatEngine

# A Chatbot conversation in gradio's "messages" format: {"role": ..., "content": ...} per turn.
History = list[dict[str, Any]]

GENERATE_GROUPS = (("generate", True), ("infer", False))  # (group, accordion open)


class ChatHolder:
    """The one loaded model of this server (models are large; every page shares it)."""

    def __init__(self) -> None:
        self.engine: ChatEngine | None = None
        self.description = ""
        self._lock = threading.Lock()

    def load(self, config: dict[str, Any]) -> str:
        """Load the model the form's `config` names (validated first, like every entry point)."""
        from ..infer import ChatEngine

        cfg = actions.validated_config(config)
        model_path, adapters = cfg.model.model_name_or_path, cfg.model.adapter_name_or_path
        if not model_path:
            raise UserError("model path is empty: choose a model name or type a model directory")
        with self._lock:
            self.unload()
            self.engine = ChatEngine(cfg)
            self.description = model_path + (f" + {', '.join(adapters)}" if adapters else "")
        return f"model loaded: {self.description}"

    def unload(self) -> str:
        self.engine, self.description = None, ""
        gc.collect()
        return "model unloaded"


CHAT = ChatHolder()


def build(page: Page, top: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    with gr.Row():
        load = page.text("load_model", gr.Button, variant="primary", elem_id="tf-chat-load")
        unload = page.text("unload_model", gr.Button, elem_id="tf-chat-unload")
    status = gr.Markdown(CHAT.description and f"model loaded: {CHAT.description}", elem_id="tf-chat-status")
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(elem_id="tf-chatbot", height=360)
            message = page.text("message", gr.Textbox, elem_id="tf-chat-message", lines=2)
            with gr.Row():
                send = page.text("send", gr.Button, variant="primary", elem_id="tf-chat-send")
                clear = page.text("clear", gr.Button, elem_id="tf-chat-clear")
        with gr.Column(scale=2):
            system = page.text("system", gr.Textbox, lines=2, elem_id="tf-chat-system")
            tools = page.text("tools", gr.Textbox, lines=3, elem_id="tf-chat-tools")
            image = page.text("image", gr.Image, type="filepath", elem_id="tf-chat-image", height=160)
            for group, open_ in GENERATE_GROUPS:
                with (page.text("generation", gr.Accordion, open=True) if group == "generate"
                      else gr.Accordion(group, open=open_)):
                    for name, param in page.params.items():
                        if param.group == group:
                            fields[name] = page.field(name, elem_id=f"tf-chat-{name}")

    names = [*top, *fields]
    inputs = [*top.values(), *fields.values()]

    def on_load(*args: Any) -> str:
        try:
            config = actions.build_config(dict(zip(names, args)), page.params, "chat", page.access)
            return CHAT.load(config)
        except Exception as error:  # noqa: BLE001  (a bad path or config is shown, the page stays up)
            return actions.error_text(error)

    load.click(on_load, inputs, status)
    unload.click(CHAT.unload, None, status)

    generate_names = [name for name in fields if page.params[name].group == "generate"]

    def on_send(history: History | None, text: str, system_prompt: str, tools_json: str, image_path: str | None,
                *generation: Any) -> Iterator[tuple[History, str]]:
        history = list(history or [])
        if not text or not text.strip():
            yield history, text
            return
        engine = CHAT.engine
        if engine is None:
            yield history + [{"role": "assistant", "content": "⚠ load a model first"}], text
            return
        overrides = {name: decode(page.params[name], value) for name, value in zip(generate_names, generation)}
        messages = [{"role": item["role"], "content": _text(item["content"])} for item in history
                    if item.get("role") in ("user", "assistant")]
        # The image goes with this turn only: its placeholder is added to the prompt, not to the history.
        placeholder = PLACEHOLDERS["images"]
        asked = text if not image_path or placeholder in text else placeholder + text
        messages.append({"role": "user", "content": asked})
        history = history + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        try:
            for piece in engine.stream_chat(messages, system=system_prompt or None, tools=tools_json or None,
                                            images=[image_path] if image_path else None, **overrides):
                history[-1]["content"] += piece
                yield history, ""
        except Exception as error:  # noqa: BLE001
            history[-1]["content"] += f"\n⚠ {error}"
        yield history, ""

    generation_inputs = [fields[name] for name in generate_names]
    send_inputs = [chatbot, message, system, tools, image, *generation_inputs]
    send.click(on_send, send_inputs, [chatbot, message])
    message.submit(on_send, send_inputs, [chatbot, message])
    clear.click(lambda: [], None, chatbot)
    return fields


def _text(content: Any) -> str:
    """A Chatbot message's content as text (gradio may hand back a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)
