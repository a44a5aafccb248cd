"""Chat templates and tool-call formats, token-identical to LLaMA-Factory 0.9.5.

    template = get_template("qwen", tokenizer)            # also fixes the tokenizer's eos/pad/stop tokens
    pairs = template.encode_multiturn(tokenizer, messages, system, tools)    # [(prompt_ids, response_ids)]
    many = template.encode_multiturn_batch(tokenizer, [(messages, system, tools), ...])   # the fast path

Modules: slots (building blocks) · template (encoding rules) · thinking (reasoning templates) ·
encoding (batched tokenization) · registry (register/get) · builtin_* (the templates, as facts) ·
tool_formats* (tool descriptions, calls, parsers) · fix_tokenizer · export (Jinja, Ollama) ·
jinja_fallback (template unset: the tokenizer's own chat template).
"""

from . import tool_formats_more  # noqa: F401 - registers the extra tool formats (before the templates using them)
from . import builtin_core  # noqa: F401 - registers the templates
from . import builtin_more_a_to_g, builtin_more_h_to_l, builtin_more_m_to_p, builtin_more_q_to_z  # noqa: F401
from .export import render_text
from .jinja_fallback import JinjaTemplate
from .registry import TEMPLATES, get_template, register_template, template_for, template_names
from .slots import BOS, EOS, Token
from .template import Template
from .tool_formats import FORMATS as TOOL_FORMATS
from .tool_formats import FunctionCall

__all__ = [
    "BOS", "EOS", "FunctionCall", "JinjaTemplate", "TEMPLATES", "TOOL_FORMATS", "Template", "Token",
    "get_template", "register_template", "render_text", "template_for", "template_names",
]
