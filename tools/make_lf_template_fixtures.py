"""Regenerate tests/fixtures/templates/lf_expected.json from LLaMA-Factory 0.9.5 itself.

Run with the Python that has llamafactory==0.9.5 installed (not tuneforge's venv):

    /tmp/lfvenv/bin/python tools/make_lf_template_fixtures.py

It loads the committed tiny tokenizer (tests/fixtures/templates/tokenizer/), and for every LLaMA-Factory
template records
  - its facts (slots per role, stop words, thought words, flags), normalized to JSON, and
  - the token ids of LLaMA-Factory's encode_multiturn / encode_oneturn on the conversations below,
    under several options (tool_format, default_system, enable_thinking, preserve_thinking,
    discarding_history_cot), plus the tokenizer state after get_template_and_fix_tokenizer.
tests/data/test_templates_lf.py compares tuneforge's templates with these. The llama3 tool prompt contains
today's date: it is pinned to FIXED_DATE here and in the tests.
"""

from __future__ import annotations

import copy
import datetime as _datetime
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "templates"
TOKENIZER_DIR = FIXTURES / "tokenizer"
FIXED_DATE = _datetime.datetime(2024, 7, 26)  # -> "26 Jul 2024"

# The families the issue names: every conversation and option is recorded for them.
CORE = ["default", "empty", "alpaca", "vicuna", "chatml", "qwen", "qwen3", "qwen3_nothink", "llama2", "llama3",
        "mistral", "gemma", "gemma3", "glm4", "deepseek", "deepseek3", "phi", "phi4", "yi", "zephyr", "cohere"]
TOOL_FORMATS = ["default", "qwen", "llama3", "glm4", "mistral",
                "glm4_moe", "ling", "minimax1", "minimax2", "qwen3_5", "seed_oss", "lfm2"]

TOOLS = json.dumps([
    {"name": "get_weather", "description": "Get the current weather in a city.",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "description": "The city name."},
         "unit": {"type": "string", "description": "Temperature unit.", "enum": ["celsius", "fahrenheit"]}},
         "required": ["city"]}},
    {"type": "function", "function": {"name": "add", "description": "Add numbers.", "parameters": {
        "type": "object", "properties": {"numbers": {"type": "array", "items": {"type": "number"},
                                                     "description": "Numbers to add."}}, "required": []}}},
])
CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}})
CALLS = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}},
                    {"name": "add", "arguments": {"numbers": [1, 2.5]}}], ensure_ascii=False)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


CONVERSATIONS = {
    "chat": {"system": "You are a helpful assistant.", "tools": "", "messages": [
        user("Hello world! How are you today?"), assistant("I am fine. 今天的天气不错"),
        user("Give three tips for staying healthy ({{idx}}).\n\n  Be brief. "),
        assistant("Eat well, sleep well and {{idx}}.")]},
    "no_system": {"system": "", "tools": "", "messages": [
        user("What is 2 + 2?"), assistant("2 + 2 = 4.")]},
    "tools": {"system": "", "tools": TOOLS, "messages": [
        user("What is the weather in Paris?"), {"role": "function", "content": CALL},
        {"role": "observation", "content": json.dumps({"temperature": 22})}, assistant("It is 22 degrees.")]},
    "tools_system": {"system": "You are a helpful assistant.", "tools": TOOLS, "messages": [
        user("Add 1 and 2.5, and tell me the weather in Paris."), {"role": "function", "content": CALLS},
        {"role": "observation", "content": "[\"sunny\", 3.5]"}, assistant("Sunny; the sum is 3.5.")]},
    "tool_call_words": {"system": "", "tools": TOOLS, "messages": [
        user("Weather in Paris?"),
        {"role": "function", "content": "Let me check.\n<tool_call>\n" + CALL + "\n</tool_call>"},
        {"role": "observation", "content": "22"}, assistant("22 degrees.")]},
    "think": {"system": "You are a helpful assistant.", "tools": "", "messages": [
        user("What is 2 + 2?"), assistant("<think>\nTwo plus two.\n</think>\n\n2 + 2 = 4."),
        user("And 3 + 3?"), assistant("<think>\nThree plus three.\n</think>\n\n6."),
        user("Thanks!"), assistant("You are welcome.")]},
    "think_function": {"system": "", "tools": TOOLS, "messages": [
        user("Weather in Paris?"), {"role": "function", "content": "<think>\nI should call.\n</think>\n\n" + CALL},
        {"role": "observation", "content": "22"}, assistant("<think>\nEasy.\n</think>\n\n22 degrees.")]},
}

# (case name, conversation, options, method); options go to get_template_and_fix_tokenizer.
CORE_CASES = [
    ("chat", "chat", {}, "multiturn"),
    ("chat_oneturn", "chat", {}, "oneturn"),
    ("no_system", "no_system", {}, "multiturn"),
    ("custom_system", "no_system", {"default_system": "Be terse."}, "multiturn"),
    ("tools", "tools", {}, "multiturn"),
    ("tools_system", "tools_system", {}, "multiturn"),
    ("tool_call_words", "tool_call_words", {}, "multiturn"),
    ("think", "think", {}, "multiturn"),
    ("think_oneturn", "think", {}, "oneturn"),
    ("think_off", "think", {"enable_thinking": False}, "multiturn"),
    ("think_off_oneturn", "think", {"enable_thinking": False}, "oneturn"),
    ("think_none", "think", {"enable_thinking": None}, "multiturn"),
    ("think_discard", "think", {"discarding_history_cot": True}, "multiturn"),
    ("think_preserve_oneturn", "think", {"preserve_thinking": True}, "oneturn"),
    ("think_function", "think_function", {}, "multiturn"),
]
OTHER_CASES = [case for case in CORE_CASES if case[0] in ("chat", "tools_system", "think", "think_off")]
# Tool formats are exercised on three host templates.
TOOL_CASES = [(f"tool_format={fmt}/{conv}@{host}", conv, {"tool_format": fmt, "_template": host}, "multiturn")
              for fmt in TOOL_FORMATS for host in ("default", "qwen", "llama2")
              for conv in ("tools", "tools_system", "tool_call_words")]
# template unset: both sides use the tokenizer's own chat template (a plain ChatML one here).
CHATML_JINJA = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
JINJA_CASES = [(f"jinja/{conv}/{method}", conv, {"_chat_template": CHATML_JINJA}, method)
               for conv, method in (("think", "multiturn"), ("no_system", "multiturn"), ("think", "oneturn"))]


def slot_json(slot):
    """A slot as JSON; None for a set naming neither bos_token nor eos_token (LLaMA-Factory emits nothing)."""
    if isinstance(slot, str):
        return slot
    if isinstance(slot, set):
        return {"marker": "bos"} if "bos_token" in slot else {"marker": "eos"} if "eos_token" in slot else None
    return {"token": slot["token"]}


def slots_json(slots):
    return [item for item in map(slot_json, slots) if item is not None]


def template_facts(template, plugin_names):
    from llamafactory.data.formatter import FunctionFormatter, ToolFormatter
    from llamafactory.data.template import Glm47ReasoningTemplate, Llama2Template, ReasoningTemplate

    tools = template.format_tools
    function = template.format_function
    facts = {
        role: slots_json(getattr(template, f"format_{role}").slots)
        for role in ("user", "assistant", "system", "function", "observation", "prefix")
    }
    tool_format = function.tool_format if isinstance(function, FunctionFormatter) else None
    if isinstance(tools, ToolFormatter) and tools.tool_format != tool_format:
        raise SystemExit(f"{template}: function and tool formats differ")
    plugin = template.mm_plugin
    media = {"plugin": plugin_names[type(plugin)]} if plugin_names[type(plugin)] != "base" else {}
    media.update({key: value for key, value in vars(plugin).items()
                  if key.endswith("_token") and value is not None})
    empty_thought = template.thought_words[1] if isinstance(template, Glm47ReasoningTemplate) else (
        template.thought_words[0] + template.thought_words[1])
    facts.update(
        tool_format=tool_format,
        tools_wrapper=None if isinstance(tools, ToolFormatter) else slots_json(tools.slots),
        default_system=template.default_system,
        stop_words=list(template.stop_words),
        thought_words=list(template.thought_words),
        tool_call_words=list(template.tool_call_words),
        empty_thought=empty_thought,
        efficient_eos=template.efficient_eos,
        replace_eos=template.replace_eos,
        replace_jinja_template=template.replace_jinja_template,
        system_in_first_user=isinstance(template, Llama2Template),
        reasoning=isinstance(template, ReasoningTemplate),
        media=media,
    )
    return facts


def run_case(name, conversation, options, method, originals, tokenizer_cls):
    from llamafactory.data import template as lf_template

    options = dict(options)
    name = options.pop("_template", name)
    chat_template = options.pop("_chat_template", None)
    discard = options.pop("discarding_history_cot", False)
    if name is not None:
        lf_template.TEMPLATES[name] = copy.deepcopy(originals[name])  # LF mutates registered templates
    data_args = SimpleNamespace(template=name, tool_format=None, default_system=None, enable_thinking=True,
                                preserve_thinking=False, train_on_prompt=False)
    for key, value in options.items():
        setattr(data_args, key, value)
    tokenizer = tokenizer_cls.from_pretrained(str(TOKENIZER_DIR))
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    conv = CONVERSATIONS[conversation]
    try:
        template = lf_template.get_template_and_fix_tokenizer(tokenizer, data_args)
        args = (tokenizer, copy.deepcopy(conv["messages"]), conv["system"], conv["tools"])
        if method == "multiturn":
            ids = [list(pair) for pair in template.encode_multiturn(*args, discarding_history_cot=discard)]
        else:
            ids = list(template.encode_oneturn(*args))
    except Exception as err:  # recorded: tuneforge must reject the same input with a UserError
        return {"template": name, "error": f"{type(err).__name__}: {err}"}
    return {
        "template": name,
        "ids": ids,
        "tokenizer": {"eos_token": tokenizer.eos_token, "eos_token_id": tokenizer.eos_token_id,
                      "pad_token_id": tokenizer.pad_token_id, "vocab_size": len(tokenizer),
                      "stop_token_ids": sorted(template.get_stop_token_ids(tokenizer))},
    }


def main() -> None:
    from llamafactory.data import template as lf_template
    from llamafactory.data import tool_utils
    from llamafactory.data.mm_plugin import PLUGINS
    from transformers import AutoTokenizer

    class FixedDate(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_DATE

    tool_utils.datetime = FixedDate
    originals = copy.deepcopy(lf_template.TEMPLATES)
    plugin_names = {cls: name for name, cls in PLUGINS.items()}
    out = {"conversations": CONVERSATIONS, "fixed_date": FIXED_DATE.strftime("%d %b %Y"), "facts": {}, "cases": {}}
    for name, template in originals.items():
        out["facts"][name] = template_facts(template, plugin_names)
        cases = CORE_CASES if name in CORE else OTHER_CASES
        for case, conversation, options, method in cases:
            out["cases"][f"{name}/{case}"] = {"conversation": conversation, "options": options, "method": method,
                                              **run_case(name, conversation, options, method, originals,
                                                         AutoTokenizer)}
    for case, conversation, options, method in TOOL_CASES + JINJA_CASES:
        out["cases"][case] = {"conversation": conversation, "options": options, "method": method,
                              **run_case(None, conversation, options, method, originals, AutoTokenizer)}
    path = FIXTURES / "lf_expected.json"
    path.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(out['cases'])} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
