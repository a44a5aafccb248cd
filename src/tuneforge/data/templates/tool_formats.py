"""Tool-call formats: how a model family is told about tools, how its calls look, and how to parse them back.

Each format has three jobs:
  describe(tools)      the text appended to the system prompt listing the available tools
  format_calls(calls)  the text of an assistant turn that calls tools
  extract(text)        model output -> [FunctionCall(name, arguments_json), ...], or the text unchanged
                       when it holds no (well-formed) call; the inverse of format_calls.

The prompt texts and call layouts are LLaMA-Factory 0.9.5's (token parity depends on them, byte for byte).
More formats live in tool_formats_more.py; both register into FORMATS.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, NamedTuple

from tuneforge.errors import DataError


class FunctionCall(NamedTuple):
    name: str
    arguments: str  # a JSON object as text


FORMATS: dict[str, "ToolFormat"] = {}


def register_tool_format(name: str):
    def add(cls):
        FORMATS[name] = cls()
        cls.name = name
        return cls

    return add


class ToolFormat:
    name = ""

    def describe(self, tools: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def format_calls(self, calls: list[FunctionCall]) -> str:
        raise NotImplementedError

    def extract(self, text: str) -> str | list[FunctionCall]:
        raise NotImplementedError


def _dumps(value: Any, **kwargs) -> str:
    return json.dumps(value, ensure_ascii=False, **kwargs)


def unwrap_function(tool: dict) -> dict:
    """OpenAI style {"type": "function", "function": {...}} -> the inner function declaration."""
    return tool.get("function", "") if tool.get("type") == "function" else tool


def wrap_function(tool: dict) -> dict:
    """A bare declaration -> OpenAI style {"type": "function", "function": {...}} (kept as is if wrapped)."""
    return tool if tool.get("type") == "function" else {"type": "function", "function": tool}


def calls_from_json(items: Any, arguments_key: str = "arguments") -> list[FunctionCall] | None:
    """[{"name", <arguments_key>}] (or one such object) -> calls; None when the shape does not match."""
    items = items if isinstance(items, list) else [items]
    try:
        return [FunctionCall(item["name"], _dumps(item[arguments_key])) for item in items]
    except (KeyError, TypeError):
        return None


# --- default (ReAct style "Action: / Action Input:") -------------------------------------------------

DEFAULT_TOOL_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n"
    "```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    """(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n"""
    "```\n"
)


@register_tool_format("default")
class DefaultFormat(ToolFormat):
    _ACTION = re.compile(r"Action:\s*([a-zA-Z0-9_]+)\s*Action Input:\s*(.+?)(?=\s*Action:|\s*$)", re.DOTALL)

    def describe(self, tools):
        blocks, names = [], []
        for tool in tools:
            tool = unwrap_function(tool)
            params = tool["parameters"]
            lines = ""
            for name, param in params["properties"].items():
                required = ", required" if name in params.get("required", []) else ""
                enum = ", should be one of [{}]".format(", ".join(param["enum"])) if param.get("enum") else ""
                items = ""
                if param.get("items"):
                    items = ", where each item should be {}".format(param["items"].get("type", ""))
                kind, description = param.get("type", ""), param.get("description", "")
                lines += f"  - {name} ({kind}{required}): {description}{enum}{items}\n"
            blocks.append(f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\n"
                          f"Tool Args:\n{lines}\n")
            names.append(tool["name"])
        return DEFAULT_TOOL_PROMPT.format(tool_text="".join(blocks), tool_names=", ".join(names))

    def format_calls(self, calls):
        return "\n".join(f"Action: {name}\nAction Input: {arguments}" for name, arguments in calls)

    def extract(self, text):
        found = self._ACTION.findall(text)
        if not found:
            return text
        calls = []
        for name, raw_input in found:
            raw_input = raw_input.strip().strip('"').strip("```")
            try:
                calls.append(FunctionCall(name.strip(), _dumps(json.loads(raw_input))))
            except json.JSONDecodeError:
                return text
        return calls


# --- qwen (Qwen 2.5 / Qwen 3: JSON inside <tool_call> tags) -----------------------------------------

QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    """<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, """
    """"arguments": <args-json-object>}}\n</tool_call>"""
)


@register_tool_format("qwen")
class QwenFormat(ToolFormat):
    prompt = QWEN_TOOL_PROMPT
    _CALL = re.compile(r"<tool_call>(.+?)</tool_call>(?=\s*<tool_call>|\s*$)", re.DOTALL)

    def describe(self, tools):
        return self.prompt.format(tool_text="".join("\n" + _dumps(wrap_function(tool)) for tool in tools))

    def format_calls(self, calls):
        bodies = [_dumps({"name": name, "arguments": json.loads(arguments)}) for name, arguments in calls]
        return "\n".join(f"<tool_call>\n{body}\n</tool_call>" for body in bodies)

    def extract(self, text):
        bodies = self._CALL.findall(text)
        if not bodies:
            return text
        calls = []
        for body in bodies:
            try:
                item = json.loads(body.strip())
            except json.JSONDecodeError:
                return text
            if not isinstance(item, dict) or "name" not in item or "arguments" not in item:
                return text
            calls.append(FunctionCall(item["name"], _dumps(item["arguments"])))
        return calls


# --- llama3 (Llama 3.x JSON tool calling, tools in the system message) -------------------------------

LLAMA3_TOOL_PROMPT = (
    "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "You have access to the following functions. To call a function, please respond with JSON for a function call. "
    """Respond in the format {{"name": function name, "parameters": dictionary of argument name and its value}}. """
    "Do not use variables.\n\n{tool_text}"
)


def today() -> str:
    """The date written into the llama3 tool prompt (tests pin it by patching this function)."""
    return datetime.now().strftime("%d %b %Y")


@register_tool_format("llama3")
class Llama3Format(ToolFormat):
    def describe(self, tools):
        tool_text = "".join(_dumps(wrap_function(tool), indent=4) + "\n\n" for tool in tools)
        return LLAMA3_TOOL_PROMPT.format(date=today(), tool_text=tool_text)

    def format_calls(self, calls):
        objects = [{"name": name, "parameters": json.loads(arguments)} for name, arguments in calls]
        return _dumps(objects[0] if len(objects) == 1 else objects)

    def extract(self, text):
        try:
            parsed = json.loads(text.strip())
        except json.JSONDecodeError:
            return text
        calls = calls_from_json(parsed, "parameters")
        return text if calls is None else calls


# --- glm4 (ChatGLM / GLM-4: "name\n{arguments}") -----------------------------------------------------

GLM4_TOOL_PROMPT = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{tool_text}"
)


@register_tool_format("glm4")
class Glm4Format(ToolFormat):
    def describe(self, tools):
        tool_text = ""
        for tool in tools:
            tool = unwrap_function(tool)
            tool_text += (f"\n\n## {tool['name']}\n\n{_dumps(tool, indent=4)}\n"
                          "在调用上述函数时，请使用 Json 格式表示调用的参数。")
        return GLM4_TOOL_PROMPT.format(tool_text=tool_text)

    def format_calls(self, calls):
        if len(calls) > 1:
            raise DataError(f"function turn: the glm4 tool format allows one call per turn, got {len(calls)} "
                            f"({', '.join(call.name for call in calls)}); split them into separate turns")
        return f"{calls[0].name}\n{calls[0].arguments}"

    def extract(self, text):
        if "\n" not in text:
            return text
        name, raw_arguments = text.split("\n", maxsplit=1)
        try:
            arguments = json.loads(raw_arguments.strip())
        except json.JSONDecodeError:
            return text
        return [FunctionCall(name, _dumps(arguments))]


# --- mistral (Mistral v0.3: [AVAILABLE_TOOLS] / [TOOL_CALLS] JSON) -----------------------------------

@register_tool_format("mistral")
class MistralFormat(ToolFormat):
    def describe(self, tools):
        return "[AVAILABLE_TOOLS] " + _dumps([wrap_function(tool) for tool in tools]) + "[/AVAILABLE_TOOLS]"

    def format_calls(self, calls):
        return _dumps([{"name": name, "arguments": json.loads(arguments)} for name, arguments in calls])

    def extract(self, text):
        try:
            parsed = json.loads(text.strip())
        except json.JSONDecodeError:
            return text
        calls = calls_from_json(parsed)
        return text if calls is None else calls
