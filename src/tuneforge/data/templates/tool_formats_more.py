"""Tool-call formats of further families (GLM-4.5+, Ling, MiniMax, Qwen 3.5, Seed-OSS, LFM2).

Same contract as tool_formats.py; prompt texts and call layouts are LLaMA-Factory 0.9.5's facts.
"""

from __future__ import annotations

import ast
import json
import re

from .tool_formats import FunctionCall, QwenFormat, ToolFormat, _dumps, register_tool_format, unwrap_function


def _value_text(value) -> str:
    """An argument value inside XML-ish call syntax: strings as is, anything else as JSON."""
    return value if isinstance(value, str) else _dumps(value)


def _parse_value(raw: str, keep_raw_on_error: bool):
    """Argument text back to a value: JSON when it parses, else the text (stripped or raw, per format)."""
    value = raw.strip()
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return raw if keep_raw_on_error else value


# --- glm4_moe (GLM-4.5 / 4.6 / 4.7: <tool_call>name <arg_key>k</arg_key><arg_value>v</arg_value>) -------

GLM4_MOE_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, output the function name and arguments within the following XML format:"
    "\n<tool_call>{{function-name}}"
    "\n<arg_key>{{arg-key-1}}</arg_key>"
    "\n<arg_value>{{arg-value-1}}</arg_value>"
    "\n<arg_key>{{arg-key-2}}</arg_key>"
    "\n<arg_value>{{arg-value-2}}</arg_value>"
    "\n...\n</tool_call>\n"
)


@register_tool_format("glm4_moe")
class Glm4MoeFormat(QwenFormat):
    """Describes tools like qwen (own prompt) and parses calls like qwen; writes calls in GLM's XML."""

    prompt = GLM4_MOE_TOOL_PROMPT

    def format_calls(self, calls):
        texts = []
        for name, arguments in calls:
            text = "\n<tool_call>" + name
            for key, value in json.loads(arguments).items():
                text += "\n<arg_key>" + key + "</arg_key>" + "\n<arg_value>" + _value_text(value) + "</arg_value>"
            texts.append(text)
        return "\n".join(texts)


# --- ling (Ling v2: qwen layout, own prompt, thinking switched off) ---------------------------------------

LING_TOOL_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    """<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, """
    """"arguments": <args-json-object>}}\n</tool_call>"""
)


@register_tool_format("ling")
class LingFormat(QwenFormat):
    prompt = LING_TOOL_PROMPT

    def describe(self, tools):
        return super().describe(tools) + "\n" + "detailed thinking off"


# --- minimax1 (MiniMax-M1: JSON lines inside <tool_calls>) ------------------------------------------------

MINIMAX_M1_TOOL_PROMPT = (
    "You are provided with these tools:\n<tools>\n{tool_text}</tools>\n\n"
    "If you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide tool-name and "
    "json-object of arguments, following the format below:\n<tool_calls>\n"
    """{{"name": <tool-name-1>, "arguments": <args-json-object-1>}}\n...\n</tool_calls>"""
)


@register_tool_format("minimax1")
class MiniMax1Format(ToolFormat):
    _BLOCK = re.compile(r"<tool_calls>\s*(.+?)\s*</tool_calls>", re.DOTALL)

    def describe(self, tools):
        return MINIMAX_M1_TOOL_PROMPT.format(tool_text="".join(_dumps(unwrap_function(t)) + "\n" for t in tools))

    def format_calls(self, calls):
        lines = [_dumps({"name": name, "arguments": json.loads(arguments)}) for name, arguments in calls]
        return "<tool_calls>\n" + "\n".join(lines) + "\n</tool_calls>"

    def extract(self, text):
        block = self._BLOCK.search(text)
        if not block:
            return text
        calls = []
        for line in block.group(1).split("\n"):
            line = line.strip()
            try:
                item = json.loads(line) if line else None
            except json.JSONDecodeError:
                continue
            if item is not None:
                calls.append(FunctionCall(item["name"], _dumps(item["arguments"])))
        return calls


# --- minimax2 (MiniMax-M2: <invoke name=...><parameter name=...>) -----------------------------------------

MINIMAX_M2_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more tools to assist with the user query.\n"
    "Here are the tools available in JSONSchema format:\n\n<tools>\n{tool_text}</tools>\n\n"
    "When making tool calls, use XML format to invoke tools and pass parameters:\n"
    """\n<minimax:tool_call>\n<invoke name="tool-name-1">\n<parameter name="param-key-1">param-value-1</parameter>\n"""
    """<parameter name="param-key-2">param-value-2</parameter>\n...\n</invoke>\n</minimax:tool_call>"""
)


@register_tool_format("minimax2")
class MiniMax2Format(ToolFormat):
    _BLOCK = re.compile(r"<minimax:tool_call>\s*(.+?)\s*</minimax:tool_call>", re.DOTALL)
    _INVOKE = re.compile(r"<invoke name=\"(.*?)\">(.*?)</invoke>", re.DOTALL)
    _PARAM = re.compile(r"<parameter name=\"(.*?)\">(.*?)</parameter>", re.DOTALL)

    def describe(self, tools):
        text = "".join("<tool>" + _dumps(unwrap_function(tool)) + "</tool>\n" for tool in tools)
        return MINIMAX_M2_TOOL_PROMPT.format(tool_text=text)

    def format_calls(self, calls):
        texts = []
        for name, arguments in calls:
            text = f'<invoke name="{name}">'
            for key, value in json.loads(arguments).items():
                text += f'\n<parameter name="{key}">' + _value_text(value) + "</parameter>"
            texts.append(text + "\n</invoke>")
        return "\n".join(texts)

    def extract(self, text):
        block = self._BLOCK.search(text)
        if not block:
            return text
        return [FunctionCall(name.strip(), _dumps({key: _parse_value(raw, True)
                                                   for key, raw in self._PARAM.findall(body)}))
                for name, body in self._INVOKE.findall(block.group(1))]


# --- qwen3_5 (Qwen 3.5: <function=name><parameter=key>value</parameter>) ---------------------------------

QWEN35_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>{tool_text}"
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: "
    "an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language "
    "BEFORE the function call, but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current knowledge "
    "and do not tell the user about function calls\n</IMPORTANT>"
)


@register_tool_format("qwen3_5")
class Qwen35Format(ToolFormat):
    _CALL = re.compile(r"<tool_call>\s*<function=\s*([^\s<>]+)\s*(.*?)\s*</function>\s*</tool_call>", re.DOTALL)
    _PARAM = re.compile(r"<parameter=(.*?)>(.*?)</parameter>", re.DOTALL)

    def describe(self, tools):
        tool_text = "".join("\n" + _dumps(tool.get("function", tool) if tool.get("type") == "function" else tool)
                            for tool in tools)
        return QWEN35_TOOL_PROMPT.format(tool_text=tool_text)

    def format_calls(self, calls):
        texts = []
        for name, arguments in calls:
            text = f"<tool_call>\n<function={name}>"
            for key, value in json.loads(arguments).items():
                text += f"\n<parameter={key}>\n{_value_text(value)}\n</parameter>"
            texts.append(text + "\n</function>\n</tool_call>")
        return "\n".join(texts)

    def extract(self, text):
        calls = [FunctionCall(name.strip(), _dumps({key: _parse_value(raw, False)
                                                    for key, raw in self._PARAM.findall(body.strip())}))
                 for name, body in self._CALL.findall(text)]
        return calls or text


# --- seed_oss (Seed-OSS: <seed:tool_call><function=name><parameter=key>value) ----------------------------

SEED_TOOL_PROMPT = (
    "system\nYou are Doubao, a helpful AI assistant. You may call one or more functions to assist with the user query."
    "Tool List:\nYou are authorized to use the following tools (described in JSON Schema format). Before performing "
    "any task, you must decide how to call them based on the descriptions and parameters of these tools.{tool_text}\n"
    "工具调用请遵循如下格式:\n<seed:tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>value_1"
    "</parameter>\n<parameter=example_parameter_2>This is the value for the second parameter\nthat can span\nmultiple "
    "lines</parameter>\n</function>\n</seed:tool_call>\n"
)


@register_tool_format("seed_oss")
class SeedOssFormat(ToolFormat):
    _CALL = re.compile(r"<seed:tool_call>\s*<function=\s*([^\s<]+)\s*(.*?)\s*</function>\s*</seed:tool_call>",
                       re.DOTALL)
    _PARAM = re.compile(r"<parameter=(.*?)>(.*?)</parameter>", re.DOTALL)

    def describe(self, tools):
        return SEED_TOOL_PROMPT.format(tool_text="\n" + _dumps(tools))

    def format_calls(self, calls):
        texts = []
        for name, arguments in calls:
            text = "\n<seed:tool_call>\n<function=" + name
            for key, value in json.loads(arguments).items():
                text += "\n<parameter=" + key + ">" + _value_text(value) + "</parameter>"
            texts.append(text + "\n</function>\n</seed:tool_call>")
        return "\n".join(texts)

    def extract(self, text):
        calls = [FunctionCall(name.strip(), _dumps({key: _parse_value(raw, True)
                                                    for key, raw in self._PARAM.findall(body.strip())}))
                 for name, body in self._CALL.findall(text)]
        return calls or text


# --- lfm2 (LFM2.5: Python call syntax inside <|tool_call_start|> ... <|tool_call_end|>) -------------------

@register_tool_format("lfm2")
class Lfm2Format(ToolFormat):
    _START, _END = "<|tool_call_start|>", "<|tool_call_end|>"
    _JSON_NAMES = {"true": True, "false": False, "null": None}

    def describe(self, tools):
        declarations = [tool.get("function", tool) if tool.get("type") == "function" else tool for tool in tools]
        return "List of tools: <|tool_list_start|>" + _dumps(declarations) + "<|tool_list_end|>"

    def format_calls(self, calls):
        texts = []
        for name, arguments in calls:
            kwargs = [f'{key}="{value}"' if isinstance(value, str) else f"{key}={_dumps(value)}"
                      for key, value in json.loads(arguments).items()]
            texts.append(f"{name}({', '.join(kwargs)})")
        return f"{self._START}[{', '.join(texts)}]{self._END}"

    def _value(self, node):
        if isinstance(node, ast.Name):
            if node.id not in self._JSON_NAMES:
                raise ValueError(node.id)
            return self._JSON_NAMES[node.id]
        return ast.literal_eval(node)

    def extract(self, text):
        start = text.find(self._START)
        end = text.find(self._END, start) if start != -1 else -1
        if end == -1:
            return text
        try:
            tree = ast.parse(text[start + len(self._START):end].strip(), mode="eval")
        except SyntaxError:
            return text
        nodes = tree.body.elts if isinstance(tree.body, ast.List) else [tree.body]
        calls = []
        for node in nodes:
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                return text
            try:
                arguments = {keyword.arg: self._value(keyword.value) for keyword in node.keywords}
            except (ValueError, SyntaxError):
                return text
            calls.append(FunctionCall(node.func.id, _dumps(arguments)))
        return calls or text

