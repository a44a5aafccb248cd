"""Built-in GRPO reward functions, called as TRL calls its reward functions:
`fn(prompts=..., completions=..., completion_ids=..., **row_columns) -> one float or None per completion`.

- accuracy: the completion's final answer equals the row's `solution` as mathematics. Parsing and comparing
  (numbers, fractions, LaTeX, sets, ...) is Hugging Face's math-verify (the checker of open-r1 and TRL's
  own accuracy reward); we own where the answer is: after the thinking block, its LaTeX (\\boxed{}, $...$,
  \\frac{}{}), else its last number. Not math-verify's plain-text expressions: they would reward restating
  the question ("20 + 9 is 21" parses as 20 + 9 = 29). A solution that is not mathematics gives None.
- format: a thinking block in the template's reasoning words (`<think>` ... `</think>` by default), then a
  non-empty answer.
- tool_call: the completion (after any thinking) is a call of one of the row's tools, in the template's
  tool format (the same parser chat and the API use), with a JSON object of arguments holding the tool's
  required parameters. A row without tools gets None (not applicable).
- length: DAPO's soft overlong penalty: 0 up to L_max - L_cache tokens, then falling linearly to -1 at L_max,
  -1 beyond.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...errors import ConfigError


def answer_part(completion: str, closing: str) -> str:
    """The text after the thinking block (all of it when there is none)."""
    at = completion.rfind(closing.strip())
    return completion[at + len(closing.strip()):] if at >= 0 else completion


LAST_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?(?:/\d+)?")


class Accuracy:
    name = "accuracy"

    def __init__(self, thought_words: tuple[str, str]):
        try:
            import math_verify  # noqa: F401
        except ImportError:
            raise ConfigError("reward_funcs: accuracy compares answers with math-verify, which is not installed; "
                              "pip install 'tuneforge[grpo]' (or math-verify==0.9.0)") from None
        self.closing = thought_words[1]

    def __call__(self, completions: list[str], solution: list[str | None], **_: Any) -> list[float | None]:
        from math_verify import LatexExtractionConfig, parse, verify

        rewards: list[float | None] = []
        for completion, gold_text in zip(completions, solution):
            gold = parse(gold_text or "")
            if not gold:  # the solution is not mathematics: this reward does not apply
                rewards.append(None)
                continue
            text = answer_part(completion, self.closing)
            answer = parse(text, extraction_config=[LatexExtractionConfig()])
            if not answer:
                numbers = LAST_NUMBER.findall(text)
                answer = parse(numbers[-1]) if numbers else []
            rewards.append(1.0 if answer and verify(gold, answer) else 0.0)
        return rewards


class Format:
    name = "format"

    def __init__(self, thought_words: tuple[str, str]):
        opening, closing = (word.strip() for word in thought_words)
        self.pattern = re.compile(rf"^\s*{re.escape(opening)}.+?{re.escape(closing)}\s*\S", re.DOTALL)

    def __call__(self, completions: list[str], **_: Any) -> list[float | None]:
        return [1.0 if self.pattern.match(completion) else 0.0 for completion in completions]


class ToolCall:
    name = "tool_call"

    def __init__(self, template: Any):
        self.template = template

    def __call__(self, completions: list[str], tools: list[str], **_: Any) -> list[float | None]:
        return [self.score(completion, row_tools) for completion, row_tools in zip(completions, tools)]

    def score(self, completion: str, tools_text: str) -> float | None:
        declared = _tool_declarations(tools_text)
        if not declared:
            return None
        calls = self.template.extract_tool(answer_part(completion, self.template.thought_words[1]).strip())
        if isinstance(calls, str) or not calls:
            return 0.0
        for call in calls:
            arguments = _json_object(call.arguments)
            spec = declared.get(call.name)
            if spec is None or arguments is None:
                return 0.0
            required = spec.get("parameters", {}).get("required", []) if isinstance(spec, dict) else []
            if any(name not in arguments for name in required):
                return 0.0
        return 1.0


def _tool_declarations(tools_text: str) -> dict[str, Any]:
    if not tools_text:
        return {}
    tools = json.loads(tools_text)  # the loader's row checks already parsed it
    tools = tools if isinstance(tools, list) else [tools]
    declared = {}
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(function, dict) and "name" in function:
            declared[function["name"]] = function
    return declared


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class SoftOverlong:
    name = "length"

    def __init__(self, max_length: int, cache_length: int):
        self.max_length, self.cache_length = max_length, cache_length

    def __call__(self, completion_ids: list[list[int]], **_: Any) -> list[float | None]:
        return [self.penalty(len(ids)) for ids in completion_ids]

    def penalty(self, length: int) -> float:
        free = self.max_length - self.cache_length
        if length <= free:
            return 0.0
        if length <= self.max_length:
            return (free - length) / self.cache_length
        return -1.0
