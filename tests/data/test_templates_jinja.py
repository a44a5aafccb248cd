"""template unset: encoding with the tokenizer's own Jinja chat template, with assistant spans found by
rendering conversation prefixes (jinja_fallback.py)."""

import json
from pathlib import Path

import pytest

from tuneforge.data.templates import JinjaTemplate, get_template
from tuneforge.errors import DataError

TOKENIZER_DIR = Path(__file__).parents[1] / "fixtures" / "templates" / "tokenizer"

# Qwen2.5-like: default system prompt, tools in the system turn, tool calls and tool results.
QWEN_LIKE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
    "{%- set rest = messages[1:] %}{%- else %}{%- set system = 'You are a bot.' %}{%- set rest = messages %}"
    "{%- endif %}"
    "{{- '<|im_start|>system\\n' + system }}"
    "{%- if tools %}{{- '\\n<tools>' }}{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>' }}{%- endif %}{{- '<|im_end|>\\n' }}"
    "{%- for message in rest %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}{{- '<|im_start|>assistant\\n' }}"
    "{%- for call in message.tool_calls %}{{- '<tool_call>\\n{\"name\": \"' + call.function.name + "
    "'\", \"arguments\": ' + (call.function.arguments | tojson) + '}\\n</tool_call>' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + "
    "'\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Drops the thought of every answer but the last (as reasoning models' templates do).
DROPS_OLD_THOUGHTS = (
    "{%- for message in messages %}{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and not loop.last %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def load(chat_template):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    tokenizer.chat_template = chat_template
    return tokenizer


def texts(tokenizer, pairs):
    return [(tokenizer.decode(prompt), tokenizer.decode(response)) for prompt, response in pairs]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_get_template_without_name_uses_the_chat_template():
    tokenizer = load(QWEN_LIKE)
    template = get_template(None, tokenizer)
    assert isinstance(template, JinjaTemplate)
    assert tokenizer.pad_token == tokenizer.eos_token  # still fixed: pad falls back to eos
    assert template.to_jinja(tokenizer) == QWEN_LIKE and template.efficient_eos is False


def test_spans_of_a_multi_turn_chat():
    tokenizer = load(QWEN_LIKE)
    template = get_template(None, tokenizer)
    pairs = template.encode_multiturn(tokenizer, [user("Hi"), assistant("Hello!"), user("2+2?"), assistant("4")])
    assert texts(tokenizer, pairs) == [
        ("<|im_start|>system\nYou are a bot.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
         "Hello!<|im_end|>\n"),
        ("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", "4<|im_end|>\n"),
    ]
    # the ids are the tokenization of the whole rendered text, as at inference
    full = tokenizer.apply_chat_template([user("Hi"), assistant("Hello!"), user("2+2?"), assistant("4")],
                                         tokenize=False)
    assert [token for pair in pairs for part in pair for token in part] == tokenizer.encode(
        full, add_special_tokens=False)


def test_tools_calls_and_results():
    tokenizer = load(QWEN_LIKE)
    template = get_template(None, tokenizer)
    tools = json.dumps([{"name": "f", "parameters": {}}])
    messages = [user("call f"), {"role": "function", "content": json.dumps({"name": "f", "arguments": {"x": 1}})},
                {"role": "observation", "content": "42"}, assistant("It is 42.")]
    pairs = template.encode_multiturn(tokenizer, messages, system="Sys", tools=tools)
    assert texts(tokenizer, pairs) == [
        ('<|im_start|>system\nSys\n<tools>\n{"name": "f", "parameters": {}}\n</tools><|im_end|>\n'
         "<|im_start|>user\ncall f<|im_end|>\n<|im_start|>assistant\n",
         '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call><|im_end|>\n'),
        ("<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
         "It is 42.<|im_end|>\n"),
    ]


def test_oneturn_and_batch_agree_with_multiturn():
    tokenizer = load(QWEN_LIKE)
    template = get_template(None, tokenizer)
    rows = [([user("a"), assistant("b"), user("c"), assistant("d")], "", ""), ([user("x"), assistant("y")], "S", "")]
    pairs = template.encode_multiturn_batch(tokenizer, rows)
    assert pairs == [template.encode_multiturn(tokenizer, *row) for row in rows]
    prompt, response = template.encode_oneturn(tokenizer, *rows[0])
    assert prompt == pairs[0][0][0] + pairs[0][0][1] + pairs[0][1][0] and response == pairs[0][1][1]


def test_template_that_rewrites_history_still_labels_every_answer():
    tokenizer = load(DROPS_OLD_THOUGHTS)
    template = get_template(None, tokenizer)
    messages = [user("Q1"), assistant("<think>\nr1\n</think>\n\nA1"),
                user("Q2"), assistant("<think>\nr2\n</think>\n\nA2")]
    assert texts(tokenizer, template.encode_multiturn(tokenizer, messages)) == [
        ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n", "A1<|im_end|>\n"),
        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", "<think>\nr2\n</think>\n\nA2<|im_end|>\n"),
    ]


def test_render_errors_are_data_errors():
    tokenizer = load("{{ raise_exception('Conversation roles must alternate') }}")
    template = get_template(None, tokenizer)
    with pytest.raises(DataError, match="chat template cannot render this conversation: Conversation roles must "
                                        "alternate; set `template:` to a built-in template name instead"):
        template.encode_multiturn(tokenizer, [user("a"), assistant("b")])


def test_enable_thinking_reaches_the_chat_template():
    tokenizer = load("{%- for m in messages %}{{- m['content'] }}{%- endfor %}"
                     "{%- if enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}")
    template = get_template(None, tokenizer, enable_thinking=False)
    prompt, response = template.encode_oneturn(tokenizer, [user("Q"), assistant("A")])
    assert tokenizer.decode(prompt) == "Q" and tokenizer.decode(response) == "A<think>\n\n</think>\n\n"
