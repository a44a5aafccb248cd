"""Write a template in other chat-format languages: Jinja (tokenizer_config.json "chat_template", used by
transformers' apply_chat_template, vLLM, TGI, ...) and an Ollama Modelfile. Also render a conversation
as plain text (what the model sees), which the tests use to check the Jinja export renders the same.

The Jinja and Ollama forms cover system / user / assistant turns; tool descriptions and tool calls are
written by Python tool formats and have no Jinja form here.
"""

from __future__ import annotations

import json

from .slots import CONTENT, Marker


def _marker_text(marker: Marker, tokenizer) -> str:
    """The token string a marker stands for ("" when the tokenizer has no such token)."""
    if marker.kind == "bos":
        return tokenizer.bos_token if tokenizer.bos_token_id is not None else ""
    if marker.kind == "eos":
        return tokenizer.eos_token if tokenizer.eos_token_id is not None else ""
    assert marker.token is not None, "a Token(...) marker always names its token"
    return marker.token


def render_text(template, tokenizer, messages, system=None, tools=None) -> str:
    """The conversation as text, exactly as encode_multiturn lays it out (markers as their token strings)."""
    if len(messages) % 2 == 0:
        plan = template._plan_multiturn(messages, system, tools)
    else:
        plan = template._message_elements(messages, system, tools)
    return "".join(item if isinstance(item, str) else _marker_text(item, tokenizer)
                   for elements in plan for item in elements)


# ---- Jinja ---------------------------------------------------------------------------------------------

def _literal(text: str) -> str:
    """A Jinja string literal (Jinja reads JSON-style escapes: \\n, \\", \\\\)."""
    return json.dumps(text, ensure_ascii=False)


def _jinja_expr(slots, tokenizer, placeholder: str = "content") -> str:
    """Slots as one Jinja expression: 'before' + content + 'after' + '<eos>' ..."""
    parts = []
    for item in slots:
        if isinstance(item, Marker):
            text = _marker_text(item, tokenizer)
            if text:
                parts.append(_literal(text))
            continue
        before, found, after = item.partition(CONTENT)
        if before:
            parts.append(_literal(before))
        if found:
            parts.append(placeholder)
        if after:
            parts.append(_literal(after))
    return " + ".join(parts) or "''"


def template_to_jinja(template, tokenizer) -> str:
    fused = template.system_in_first_user
    system_slots = template.system[:1] if fused else template.system
    system_expr = _jinja_expr(system_slots, tokenizer, placeholder="system_message")
    out = []
    if template.prefix:
        out.append("{{ " + _jinja_expr(template.prefix, tokenizer) + " }}")
    # A leading system message (or, failing that, the default system prompt) fills the system block.
    out.append("{% set system_message = " + _literal(template.default_system) + " %}")
    out.append("{% set loop_messages = messages %}")
    out.append("{% if messages and messages[0]['role'] == 'system' %}"
               "{% set loop_messages = messages[1:] %}"
               "{% if messages[0]['content'] %}{% set system_message = messages[0]['content'] %}{% endif %}"
               "{% endif %}")
    if not fused:
        out.append("{% if system_message %}{{ " + system_expr + " }}{% endif %}")
    out.append("{% for message in loop_messages %}{% set content = message['content'] %}")
    if fused:
        out.append("{% if loop.index0 == 0 and system_message %}"
                   "{% set content = " + system_expr + " + content %}{% endif %}")
    out.append("{% if message['role'] == 'user' %}{{ " + _jinja_expr(template.user, tokenizer) + " }}"
               "{% elif message['role'] == 'assistant' %}{{ " + _jinja_expr(template.assistant, tokenizer) + " }}"
               "{% endif %}{% endfor %}")
    return "".join(out)


# ---- Ollama --------------------------------------------------------------------------------------------

def _ollama_text(slots, tokenizer, placeholder: str) -> str:
    pieces = []
    for item in slots:
        pieces.append(_marker_text(item, tokenizer) if isinstance(item, Marker) else item.replace(CONTENT, placeholder))
    return "".join(pieces)


def template_to_ollama_modelfile(template, tokenizer) -> str:
    """An Ollama Modelfile (FROM the current directory) with this template, default system and stop tokens."""
    prefix = _ollama_text(template.prefix, tokenizer, "")
    assistant = _ollama_text(template.assistant, tokenizer, "{{ .Content }}")
    if template.system_in_first_user:
        system = _ollama_text(template.system[:1], tokenizer, "{{ $.System }}")
        user = _ollama_text(template.user, tokenizer,
                            "{{ if and (eq $i 0) $.System }}" + system + "{{ end }}{{ .Content }}")
        body = (f"{prefix}{{{{ range $i, $_ := .Messages }}}}{{{{ if eq .Role \"user\" }}}}{user}"
                f"{{{{ else if eq .Role \"assistant\" }}}}{assistant}{{{{ end }}}}{{{{ end }}}}")
    else:
        system = _ollama_text(template.system, tokenizer, "{{ .System }}")
        user = _ollama_text(template.user, tokenizer, "{{ .Content }}")
        body = (f"{prefix}{{{{ if .System }}}}{system}{{{{ end }}}}{{{{ range .Messages }}}}"
                f"{{{{ if eq .Role \"user\" }}}}{user}{{{{ else if eq .Role \"assistant\" }}}}{assistant}"
                f"{{{{ end }}}}{{{{ end }}}}")
    lines = ["# Ollama Modelfile written by tuneforge", "", "FROM .", "", f'TEMPLATE """{body}"""', ""]
    if template.default_system:
        lines += [f'SYSTEM """{template.default_system}"""', ""]
    for token_id in template.get_stop_token_ids(tokenizer):
        lines.append(f'PARAMETER stop "{tokenizer.convert_ids_to_tokens(token_id)}"')
    lines.append("PARAMETER num_ctx 4096")
    return "\n".join(lines) + "\n"
