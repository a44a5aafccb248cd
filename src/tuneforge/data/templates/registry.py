"""The template registry: register_template() declares a template from facts, get_template() hands out a
configured copy and prepares the tokenizer for it.

Defaults follow LLaMA-Factory's registration rules so a declaration lists only what differs:
  user / system     "{{content}}"
  assistant         "{{content}}" + EOS  ("{{content}}" alone when efficient_eos)
  function          the assistant slots (calls rendered by `tool_format`)
  observation       the user slots
The registry's templates are never modified: get_template returns a copy with the run's options applied.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError

from .slots import CONTENT, EOS, as_slots, has_content
from .template import Template
from .tool_formats import FORMATS

if TYPE_CHECKING:
    from tuneforge.config.groups import DataArgs

logger = logging.getLogger(__name__)

TEMPLATES: dict[str, Template] = {}


def _assistant_default(efficient_eos: bool) -> tuple:
    return (CONTENT,) if efficient_eos else (CONTENT, EOS)


def register_template(
    name: str,
    *,
    user=None,
    assistant=None,
    system=None,
    function=None,
    observation=None,
    prefix=None,
    tool_format: str = "default",
    tools_wrapper=None,
    default_system: str = "",
    stop_words: list[str] | tuple[str, ...] = (),
    thought_words: tuple[str, str] | None = None,
    tool_call_words: tuple[str, str] | None = None,
    empty_thought: str | None = None,
    efficient_eos: bool = False,
    replace_eos: bool = False,
    replace_jinja_template: bool = False,
    system_in_first_user: bool = False,
    reasoning: bool = False,
    media: dict | None = None,
) -> Template:
    """Declare a chat template. Slot arguments take a string or a list of strings / BOS / EOS / Token(...)."""
    if name in TEMPLATES:
        raise ValueError(f"template {name!r} is already registered")
    if tool_format not in FORMATS:
        raise ValueError(f"template {name!r}: unknown tool format {tool_format!r}")
    user_slots = as_slots(user) or (CONTENT,)
    assistant_slots = as_slots(assistant) or _assistant_default(efficient_eos)
    extra: dict[str, Any] = {}  # only the word pairs given, so Template's defaults apply to the others
    if thought_words is not None:
        extra["thought_words"] = tuple(thought_words)
    if tool_call_words is not None:
        extra["tool_call_words"] = tuple(tool_call_words)
    template = Template(
        name=name,
        user=user_slots,
        assistant=assistant_slots,
        system=as_slots(system) or (CONTENT,),
        function=as_slots(function) or assistant_slots,
        observation=as_slots(observation) or user_slots,
        prefix=as_slots(prefix) or (),
        tool_format=tool_format,
        tools_wrapper=as_slots(tools_wrapper),
        default_system=default_system,
        stop_words=tuple(stop_words),
        empty_thought=empty_thought,
        efficient_eos=efficient_eos,
        replace_eos=replace_eos,
        replace_jinja_template=replace_jinja_template,
        system_in_first_user=system_in_first_user,
        reasoning=reasoning,
        media=dict(media or {}),
        **extra,
    )
    for role in ("user", "assistant", "system", "function", "observation"):
        if not has_content(getattr(template, role)):
            raise ValueError(f"template {name!r}: the {role} slots need a {CONTENT} placeholder")
    if has_content(template.prefix):
        raise ValueError(f"template {name!r}: the prefix cannot hold {CONTENT}")
    if replace_eos and not stop_words:
        raise ValueError(f"template {name!r}: replace_eos needs stop_words (the first one becomes the eos token)")
    TEMPLATES[name] = template
    return template


def template_names() -> list[str]:
    return sorted(TEMPLATES)


def name_problems(template: str | None, tool_format: str | None) -> list[str]:
    """Problems with the template / tool_format names, for the up-front check before anything loads."""
    problems = []
    if template is not None and template not in TEMPLATES:
        problems.append(str(_unknown("template", template, TEMPLATES)))
    if tool_format is not None and tool_format not in FORMATS:
        problems.append(str(_unknown("tool_format", tool_format, FORMATS)))
    return problems


def _unknown(kind: str, value: str, known) -> ConfigError:
    close = difflib.get_close_matches(value, list(known), n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    if len(known) <= 20:
        listing = f"known: {', '.join(sorted(known))}"
    else:
        listing = f"{len(known)} are known (tuneforge.data.templates.template_names() lists them)"
    return ConfigError(f"{kind}: unknown {kind} {value!r}{hint}; {listing}")


def template_for(tokenizer, data: DataArgs):
    """The run's template from its data settings, `tokenizer` fixed for it: the one place a template is resolved
    for training, chat, the API, evaluation and export."""
    return get_template(data.template, tokenizer, tool_format=data.tool_format, default_system=data.default_system,
                        enable_thinking=data.enable_thinking, preserve_thinking=data.preserve_thinking,
                        train_on_prompt=data.train_on_prompt)


def get_template(
    name: str | None,
    tokenizer,
    *,
    tool_format: str | None = None,
    default_system: str | None = None,
    enable_thinking: bool | None = True,
    preserve_thinking: bool = False,
    train_on_prompt: bool = False,
):
    """The named template configured for this run, with `tokenizer` fixed for it (in place).

    name None: use the tokenizer's own Jinja chat template (see jinja_fallback.py), or the `empty`
    template when it has none. The tokenizer gets the template's eos/pad/stop tokens (fix_tokenizer.py)
    and, when it has no chat template or the template asks for it, an equivalent Jinja chat template.
    """
    from .fix_tokenizer import fix_tokenizer, set_chat_template

    if name is None and isinstance(getattr(tokenizer, "chat_template", None), str):
        from .jinja_fallback import JinjaTemplate

        jinja = JinjaTemplate.from_tokenizer(tokenizer, enable_thinking)
        fix_tokenizer(jinja, tokenizer)
        return jinja
    if name is None:
        logger.warning("`template` is not set and the tokenizer has no chat template: using the `empty` template")
        name = "empty"
    if name not in TEMPLATES:
        raise _unknown("template", name, TEMPLATES)
    template = dataclasses.replace(TEMPLATES[name])
    if train_on_prompt and template.efficient_eos:
        raise ConfigError(f"train_on_prompt: the {name!r} template puts the eos token at the start of the next "
                          "prompt (efficient_eos), so it cannot train on prompts; set train_on_prompt: false")
    if tool_format is not None:
        if tool_format not in FORMATS:
            raise _unknown("tool_format", tool_format, FORMATS)
        # As LLaMA-Factory does: an explicit tool_format also resets the function-call slots to the plain
        # assistant default ("{{content}}" + eos), dropping any template-specific suffix.
        template.function = _assistant_default(template.efficient_eos)
        template.tool_format = tool_format
        template.tools_wrapper = None
    if default_system is not None:
        template.default_system = default_system
    if template.reasoning:
        template.enable_thinking = enable_thinking
        template.preserve_thinking = preserve_thinking
    fix_tokenizer(template, tokenizer)
    set_chat_template(template, tokenizer)
    return template
