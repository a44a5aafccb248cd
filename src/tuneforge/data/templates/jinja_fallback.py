"""`template` unset: encode with the tokenizer's own Jinja chat template and still label assistant turns.

The Jinja template renders a whole conversation to text; it does not say which characters belong to
which turn. We find the turn boundaries by rendering prefixes of the conversation and comparing:

    full      = render(all messages)
    prompt_k  = render(messages up to user turn k, add_generation_prompt=True)   -> where answer k starts
    answer_k  = render(messages up to assistant turn k)                          -> where answer k ends

A boundary is the length of the common prefix of `full` and the partial render (they agree up to the
boundary). Templates that rewrite history (e.g. drop the thoughts of earlier answers) render an answer
differently once later turns follow; then the answer's end is found by locating the end of its text. The full text
is tokenized ONCE, like apply_chat_template(tokenize=True) does, and each token goes to the segment
holding its first character. So the ids are exactly what the model sees at inference.

This deliberately differs from LLaMA-Factory, which guesses slot strings from a few renders and then
encodes those slots piece by piece; that guess breaks on templates with conditionals, and its ids differ
from the model's own rendering at piece boundaries. With a named template we match LLaMA-Factory exactly.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tuneforge.errors import DataError

from .tool_formats import FORMATS


def _to_hf_messages(messages, system: str | None) -> list[dict]:
    """Canonical messages -> the OpenAI/HF chat format chat templates expect."""
    converted: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "observation":
            converted.append({"role": "tool", "content": content})
        elif role == "function":
            try:
                calls = json.loads(content)
            except json.JSONDecodeError:
                raise DataError(f"function call turn: expected JSON {{\"name\": ..., \"arguments\": {{...}}}}, "
                                f"got {content[:120]!r}")
            calls = calls if isinstance(calls, list) else [calls]
            converted.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
                for call in calls]})
        else:
            converted.append({"role": role, "content": content})
    return converted


def _common_prefix_length(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _locate_answer_end(full: str, partial: str, content: str, start: int, stop: int) -> int | None:
    """Where an answer ends in `full` when later turns changed how it renders (so `partial`, the render that
    ends with this answer, is not a prefix of `full`): find the answer's last characters after `start`
    (the longest tail of its text that survived the rewrite), then step over the closing markup `partial`
    puts after it (e.g. "<|im_end|>\\n")."""
    for size in (32, 16, 8, 4, 2, 1):
        tail = content[-size:]
        found = full.find(tail, start, stop) if tail else -1
        if found != -1:
            after_content = found + len(tail)
            closing = partial[partial.rfind(tail) + len(tail):]
            return after_content + len(closing) if full.startswith(closing, after_content) else after_content
    return None


class JinjaTemplate:
    """Same encoding API as Template, driven by the tokenizer's chat template."""

    name = "jinja"
    efficient_eos = False
    reasoning = False
    preserve_thinking = False
    replace_eos = False
    replace_jinja_template = False
    stop_words = ()
    default_system = ""
    tool_format = "default"

    def __init__(self, chat_template: str, enable_thinking: bool | None = True):
        self.chat_template = chat_template
        self.enable_thinking = enable_thinking  # passed to the chat template (reasoning models' templates read it)

    def __repr__(self) -> str:  # stable: the data cache keys on it
        return f"JinjaTemplate(chat_template={self.chat_template!r}, enable_thinking={self.enable_thinking!r})"

    @classmethod
    def from_tokenizer(cls, tokenizer, enable_thinking: bool | None = True) -> "JinjaTemplate":
        return cls(tokenizer.chat_template, enable_thinking)

    # ---- rendering --------------------------------------------------------------------------------------

    def _render(self, tokenizer, conversation, tools, add_generation_prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(conversation, tools=tools, chat_template=self.chat_template,
                                                 tokenize=False, add_generation_prompt=add_generation_prompt,
                                                 enable_thinking=self.enable_thinking)
        except Exception as err:  # jinja raises its own TemplateError / TypeError for unsupported input
            raise DataError(f"the tokenizer's chat template cannot render this conversation: {err}; "
                            "set `template:` to a built-in template name instead") from err

    def _segments(self, tokenizer, messages, system, tools) -> tuple[str, list[int]]:
        """The full text and the character offsets where each message's segment ends."""
        if len(messages) % 2:
            raise DataError(f"expected prompt/response message pairs, got {len(messages)} messages (an odd number)")
        tool_list = json.loads(tools) if tools else None
        conversation = _to_hf_messages(messages, system)
        offset = len(conversation) - len(messages)  # 1 when a system message leads

        def render(count: int, add_generation_prompt: bool) -> str:
            return self._render(tokenizer, conversation[:offset + count], tool_list, add_generation_prompt)

        full = render(len(messages), add_generation_prompt=False)
        prompt_ends, previous = [], 0
        for i in range(0, len(messages), 2):
            previous = max(previous, _common_prefix_length(full, render(i + 1, add_generation_prompt=True)))
            prompt_ends.append(previous)
        ends = []
        for turn, prompt_end in enumerate(prompt_ends):
            if turn + 1 == len(prompt_ends):
                answer_end = len(full)  # the last answer owns everything the template writes after it
            else:
                next_prompt_end = prompt_ends[turn + 1]
                partial = render(2 * turn + 2, add_generation_prompt=False)
                answer_end = _common_prefix_length(full, partial)
                if answer_end < len(partial):  # the template rewrote this turn later on (e.g. dropped a thought)
                    answer_end = _locate_answer_end(full, partial, messages[2 * turn + 1]["content"],
                                                    prompt_end, next_prompt_end) or answer_end
                answer_end = min(max(answer_end, prompt_end), next_prompt_end)
            ends += [prompt_end, answer_end]
        return full, ends

    # ---- encoding API -----------------------------------------------------------------------------------

    def encode_multiturn_batch(self, tokenizer, rows, discarding_history_cot: bool = False):
        segmented = [self._segments(tokenizer, *row) for row in rows]
        encoded = tokenizer([text for text, _ in segmented], add_special_tokens=False, return_offsets_mapping=True)
        results = []
        for (text, ends), ids, offsets in zip(segmented, encoded["input_ids"], encoded["offset_mapping"]):
            parts: list[list[int]] = [[] for _ in ends]
            segment = 0
            for token_id, (start, _) in zip(ids, offsets):
                while segment < len(ends) - 1 and start >= ends[segment]:
                    segment += 1
                parts[segment].append(token_id)
            results.append([(parts[i], parts[i + 1]) for i in range(0, len(parts), 2)])
        return results

    def encode_oneturn_batch(self, tokenizer, rows):
        results = []
        for pairs in self.encode_multiturn_batch(tokenizer, rows):
            prompt = [token for source, target in pairs[:-1] for token in source + target] + pairs[-1][0]
            results.append((prompt, pairs[-1][1]))
        return results

    def encode_multiturn(self, tokenizer, messages, system=None, tools=None, discarding_history_cot=False):
        return self.encode_multiturn_batch(tokenizer, [(messages, system, tools)])[0]

    def encode_oneturn(self, tokenizer, messages, system=None, tools=None):
        return self.encode_oneturn_batch(tokenizer, [(messages, system, tools)])[0]

    # ---- the rest of the Template API -------------------------------------------------------------------

    def get_stop_token_ids(self, tokenizer) -> list[int]:
        return [tokenizer.eos_token_id]

    def extract_tool(self, text: str):
        return FORMATS[self.tool_format].extract(text)

    def to_jinja(self, tokenizer) -> str:
        return self.chat_template
