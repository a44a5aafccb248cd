"""Tool-call formats: tool descriptions, call formatting, and parsing model output back into calls."""

import json
from pathlib import Path

import pytest

from tuneforge.data.templates import TOOL_FORMATS, FunctionCall, get_template, tool_formats

WEATHER = FunctionCall("get_weather", json.dumps({"city": "Paris", "unit": "celsius"}))
ADD = FunctionCall("add", json.dumps({"numbers": [1, 2.5], "exact": True}))
# As in LLaMA-Factory: glm4_moe parses qwen-style calls (not its own XML layout), and minimax2's calls are
# wrapped in <minimax:tool_call> by the model, not by format_calls.
INVERTIBLE = sorted(set(TOOL_FORMATS) - {"glm4_moe", "minimax2"})
PARALLEL_FORMATS = sorted(set(INVERTIBLE) - {"glm4"})  # glm4 has one call per turn


@pytest.mark.parametrize("name", INVERTIBLE)
def test_extract_inverts_format_calls(name):
    form = TOOL_FORMATS[name]
    assert form.extract(form.format_calls([WEATHER])) == [WEATHER]


@pytest.mark.parametrize("name", PARALLEL_FORMATS)
def test_extract_inverts_parallel_calls(name):
    form = TOOL_FORMATS[name]
    assert form.extract(form.format_calls([WEATHER, ADD])) == [WEATHER, ADD]


def test_minimax2_and_glm4_moe_parse_what_their_models_emit():
    minimax2 = TOOL_FORMATS["minimax2"]
    emitted = "<minimax:tool_call>\n" + minimax2.format_calls([WEATHER, ADD]) + "\n</minimax:tool_call>"
    assert minimax2.extract(emitted) == [WEATHER, ADD]
    assert TOOL_FORMATS["glm4_moe"].extract(TOOL_FORMATS["qwen"].format_calls([WEATHER])) == [WEATHER]


@pytest.mark.parametrize("name", sorted(TOOL_FORMATS))
def test_plain_text_is_returned_unchanged(name):
    text = "The weather in Paris is sunny."
    assert TOOL_FORMATS[name].extract(text) == text


@pytest.mark.parametrize("name, output, expected", [
    ("default", 'Action: get_weather\nAction Input: {"city": "Paris"}',
     [FunctionCall("get_weather", '{"city": "Paris"}')]),
    ("default", 'Action: f\nAction Input: {"a": 1}\nAction: g\nAction Input: ```{"b": "二"}```',
     [FunctionCall("f", '{"a": 1}'), FunctionCall("g", '{"b": "二"}')]),
    ("default", "Action: f\nAction Input: not json", "Action: f\nAction Input: not json"),
    ("qwen", 'Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
     [FunctionCall("f", '{"x": 1}')]),
    ("qwen", '<tool_call>\n{"name": "f"}\n</tool_call>', '<tool_call>\n{"name": "f"}\n</tool_call>'),
    ("llama3", '{"name": "f", "parameters": {"x": 1}}', [FunctionCall("f", '{"x": 1}')]),
    ("llama3", '{"name": "f", "arguments": {"x": 1}}', '{"name": "f", "arguments": {"x": 1}}'),
    ("glm4", 'get_weather\n{"city": "Paris"}', [FunctionCall("get_weather", '{"city": "Paris"}')]),
    ("glm4", "hello\nworld", "hello\nworld"),
    ("mistral", '[{"name": "f", "arguments": {"x": 1}}]', [FunctionCall("f", '{"x": 1}')]),
    ("mistral", "[1, 2]", "[1, 2]"),
])
def test_extract_examples(name, output, expected):
    assert TOOL_FORMATS[name].extract(output) == expected


def test_default_describe_text():
    tools = [{"name": "get_weather", "description": "Weather now.", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City."},
        "unit": {"type": "string", "description": "Unit.", "enum": ["c", "f"]},
        "days": {"type": "array", "description": "Days.", "items": {"type": "integer"}}}, "required": ["city"]}}]
    assert TOOL_FORMATS["default"].describe(tools) == (
        "You have access to the following tools:\n"
        "> Tool Name: get_weather\nTool Description: Weather now.\nTool Args:\n"
        "  - city (string, required): City.\n"
        "  - unit (string): Unit., should be one of [c, f]\n"
        "  - days (array): Days., where each item should be integer\n\n"
        "Use the following format if using a tool:\n```\n"
        "Action: tool name (one of [get_weather])\n"
        'Action Input: the input to the tool, in a JSON format representing the kwargs (e.g. ```{"input": '
        '"hello world", "num_beams": 5}```)\n```\n')


def test_llama3_describe_uses_todays_date(monkeypatch):
    monkeypatch.setattr(tool_formats, "today", lambda: "01 Jan 2030")
    text = TOOL_FORMATS["llama3"].describe([{"name": "f", "parameters": {}}])
    assert text.startswith("Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2030\n\n")
    assert '"type": "function"' in text


def test_template_extract_tool_uses_its_format():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(Path(__file__).parents[1] / "fixtures" / "templates" / "tokenizer"))
    qwen = get_template("qwen", tokenizer)
    assert qwen.extract_tool('<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>') == [FunctionCall("f", "{}")]
    as_default = get_template("qwen", tokenizer, tool_format="default")
    assert as_default.extract_tool('Action: f\nAction Input: {}') == [FunctionCall("f", "{}")]
