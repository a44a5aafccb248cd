"""A chat template: slot lists per role plus the rules that turn a conversation into token ids.

Encoding (semantics identical to LLaMA-Factory 0.9.5's Template.encode_multiturn / encode_oneturn):

    message 0:  prefix + system block (system prompt + tool description) + user turn
    message i:  the slots of its role, filled with its content

Each message becomes a list of elements (see slots.py); every string element is tokenized on its own.
`encode_multiturn` pairs the messages (prompt_ids, response_ids) per turn; `encode_oneturn` joins every
message but the last into the prompt. The *_batch forms encode many rows with one tokenizer call and
return exactly what the per-row forms return (the per-row forms are batches of one).

Two family rules change the layout:
  system_in_first_user  the system block is glued to the front of the first user message (llama2, gemma,
                        mistral: their formats have no separate system turn);
  reasoning             thought blocks (<think>...</think>) are handled as in thinking.py (qwen3, ...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tuneforge.errors import DataError

from . import thinking
from .encoding import encode_elements
from .slots import Slot, Slots, fill, first_text
from .tool_formats import FORMATS, FunctionCall

Row = tuple[list[dict[str, Any]], str | None, str | None]  # (messages, system, tools)


@lru_cache(maxsize=64)
def _between(opening: str, closing: str) -> re.Pattern:
    """Non-greedy match of opening ... closing (across lines)."""
    return re.compile(f"{re.escape(opening)}(.*?){re.escape(closing)}", re.DOTALL)


@dataclass
class Template:
    name: str
    user: Slots
    assistant: Slots
    system: Slots
    function: Slots
    observation: Slots
    prefix: Slots = ()
    tool_format: str = "default"
    tools_wrapper: Slots | None = None  # the raw tools JSON goes into these slots instead of a tool format
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    thought_words: tuple[str, str] = ("<think>\n", "\n</think>\n\n")
    tool_call_words: tuple[str, str] = ("<tool_call>", "</tool_call>")
    empty_thought: str | None = None  # what "no thinking" looks like; None = thought_words joined
    efficient_eos: bool = False
    replace_eos: bool = False
    replace_jinja_template: bool = False
    system_in_first_user: bool = False
    reasoning: bool = False
    enable_thinking: bool | None = True
    preserve_thinking: bool = False
    media: dict = field(default_factory=dict)  # multimodal placeholder facts (plugin, image_token, ...)

    def __post_init__(self):
        if self.empty_thought is None:
            self.empty_thought = self.thought_words[0] + self.thought_words[1]

    # ---- public encoding API --------------------------------------------------------------------------

    def encode_multiturn(self, tokenizer, messages, system=None, tools=None, discarding_history_cot=False):
        """[(prompt_ids, response_ids), ...], one pair per user/assistant turn."""
        return self.encode_multiturn_batch(tokenizer, [(messages, system, tools)], discarding_history_cot)[0]

    def encode_oneturn(self, tokenizer, messages, system=None, tools=None):
        """(prompt_ids, response_ids): everything before the last message, and the last message."""
        return self.encode_oneturn_batch(tokenizer, [(messages, system, tools)])[0]

    def encode_multiturn_batch(self, tokenizer, rows: list[Row], discarding_history_cot: bool = False):
        plans = [self._plan_multiturn(*row, discarding_history_cot=discarding_history_cot) for row in rows]
        encoded = encode_elements(tokenizer, plans)
        return [[(ids[i], ids[i + 1]) for i in range(0, len(ids), 2)] for ids in encoded]

    def encode_oneturn_batch(self, tokenizer, rows: list[Row]):
        plans = [self._plan_oneturn(*row) for row in rows]
        # Encode as two "messages" per row: the prompt elements joined, then the response elements.
        joined = [[[element for elements in plan[:-1] for element in elements], plan[-1]] for plan in plans]
        return [(ids[0], ids[1]) for ids in encode_elements(tokenizer, joined)]

    def get_stop_token_ids(self, tokenizer) -> list[int]:
        """The eos id plus every stop word's id (generation stops at any of them)."""
        ids = {tokenizer.eos_token_id}
        ids.update(tokenizer.convert_tokens_to_ids(word) for word in self.stop_words)
        return list(ids)

    def extract_tool(self, text: str) -> str | list[FunctionCall]:
        """Model output -> [FunctionCall(name, arguments_json), ...], or the text when it calls no tool.
        (Templates with raw-text tool descriptions, like phi4_mini, still write calls in `tool_format`.)"""
        return FORMATS[self.tool_format].extract(text)

    def to_jinja(self, tokenizer) -> str:
        from .export import template_to_jinja

        return template_to_jinja(self, tokenizer)

    def to_ollama_modelfile(self, tokenizer) -> str:
        from .export import template_to_ollama_modelfile

        return template_to_ollama_modelfile(self, tokenizer)

    # ---- conversation -> elements ----------------------------------------------------------------------

    def _plan_multiturn(self, messages, system=None, tools=None, discarding_history_cot=False):
        if len(messages) % 2:
            raise DataError(f"expected prompt/response message pairs, got {len(messages)} messages (an odd number)")
        if not self.reasoning:
            return self._message_elements(messages, system, tools)
        return thinking.plan_multiturn(self, messages, system, tools, discarding_history_cot)

    def _plan_oneturn(self, messages, system=None, tools=None):
        if not self.reasoning:
            return self._message_elements(messages, system, tools)
        return thinking.plan_oneturn(self, messages, system, tools)

    def _message_elements(self, messages, system, tools) -> list[list]:
        """One element list per message."""
        system = system or self.default_system
        fused = self.system_in_first_user
        plan = []
        for i, message in enumerate(messages):
            role, content = message["role"], message["content"]
            elements: list[Slot] = []
            system_text = ""
            if i == 0:
                elements += self.prefix
                if system or tools:
                    system_content = system + self._tool_text(tools)
                    if fused:
                        system_text = first_text(self.system, system_content)
                    else:
                        elements += fill(self.system, system_content)
            if role == "user":
                if fused:
                    elements += fill(self.user, system_text + content)
                else:
                    elements += fill(self.user, content, idx=str(i // 2))
            elif role == "assistant":
                elements += fill(self.assistant, content)
            elif role == "observation":
                elements += fill(self.observation, content)
            elif role == "function":
                elements += fill(self.function, self._function_text(content, use_words=not fused))
            else:
                raise DataError(f"message {i}: unknown role {role!r}; expected user, assistant, observation "
                                "or function")
            plan.append(elements)
        return plan

    def _tool_text(self, tools: str | None) -> str:
        """The tool description appended to the system prompt ("" when there are no tools)."""
        if not tools:
            return ""
        if self.tools_wrapper is not None:
            wrapped = fill(self.tools_wrapper, tools)[0]
            assert isinstance(wrapped, str), "a tools_wrapper starts with text (the tool description goes in it)"
            return wrapped
        try:
            parsed = json.loads(tools)
        except json.JSONDecodeError as err:
            raise DataError(f"tools: not valid JSON ({err.msg} at char {err.pos}); expected a JSON list of tool "
                            f"declarations like [{{\"name\": ..., \"parameters\": {{...}}}}], got {tools[:80]!r}")
        if isinstance(parsed, dict):
            parsed = [parsed]
        try:
            return FORMATS[self.tool_format].describe(parsed) if len(parsed) != 0 else ""
        except (KeyError, TypeError, AttributeError) as err:
            raise DataError(f"tools: a tool declaration lacks a field or has the wrong shape ({err!r}); each tool "
                            "needs \"name\" and \"parameters\": {\"properties\": {...}}")

    def _function_text(self, content: str, use_words: bool) -> str:
        """An assistant turn that calls tools: JSON calls in the data -> this family's call syntax.

        The data may wrap the JSON in tool-call words (<tool_call>...</tool_call>) with free text (thoughts)
        around it, or put a thought block before bare JSON; the surrounding text is kept in front.
        """
        form = FORMATS[self.tool_format]
        call_match = _between(*self.tool_call_words).search(content) if use_words else None
        if call_match is not None:
            before = content.replace(call_match.group(0), "")
            return before + form.format_calls(_parse_calls(call_match.group(1), content))
        thought_match = _between(*self.thought_words).search(content) if use_words else None
        if thought_match is None:
            return form.format_calls(_parse_calls(content, content))
        calls = _parse_calls(content.replace(thought_match.group(0), ""), content)
        return thought_match.group(0) + form.format_calls(calls)


def _parse_calls(json_text: str, content: str) -> list[FunctionCall]:
    """The calls of a function turn: {"name", "arguments"} or a list of them (parallel calls)."""
    try:
        calls = json.loads(json_text)
    except json.JSONDecodeError:
        calls = None
    calls = calls if isinstance(calls, list) else [calls]
    try:
        return [FunctionCall(call["name"], json.dumps(call["arguments"], ensure_ascii=False)) for call in calls]
    except (KeyError, TypeError):
        raise DataError(f"function call turn: expected JSON {{\"name\": ..., \"arguments\": {{...}}}} or a list "
                        f"of them, got {content[:120]!r}")
