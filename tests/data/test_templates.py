"""Chat templates: readable layouts, batch == per-row, tokenizer fixing, thinking rules, and error texts.
(Id-for-id parity with LLaMA-Factory is in test_templates_lf.py.)"""

import json
import random
from pathlib import Path

import pytest

from tuneforge.data.templates import EOS, TEMPLATES, get_template, register_template, render_text
from tuneforge.data.templates.encoding import _plain_backend, tokenize_texts
from tuneforge.errors import ConfigError, DataError

TOKENIZER_DIR = Path(__file__).parents[1] / "fixtures" / "templates" / "tokenizer"


@pytest.fixture
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


CHAT = [user("Hi"), assistant("Hello!"), user("2+2?"), assistant("4")]


def decode_pairs(tokenizer, pairs):
    return [(tokenizer.decode(prompt), tokenizer.decode(response)) for prompt, response in pairs]


# ---- layouts ----------------------------------------------------------------------------------------------

def test_qwen_layout_with_default_system(tokenizer):
    template = get_template("qwen", tokenizer)
    pairs = template.encode_multiturn(tokenizer, CHAT)
    assert decode_pairs(tokenizer, pairs) == [
        ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "Hello!<|im_end|>\n"),
        ("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", "4<|im_end|>\n"),
    ]
    assert template.name == "qwen" and template.efficient_eos is False


def test_llama2_fuses_system_into_first_user_turn(tokenizer):
    template = get_template("llama2", tokenizer)
    pairs = template.encode_multiturn(tokenizer, CHAT, system="Be kind.")
    assert decode_pairs(tokenizer, pairs) == [
        ("<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST]", "Hello!<|endoftext|>"),
        ("<s>[INST] 2+2? [/INST]", "4<|endoftext|>"),
    ]


def test_oneturn_joins_history_into_prompt(tokenizer):
    template = get_template("chatml", tokenizer)
    prompt, response = template.encode_oneturn(tokenizer, CHAT, system="S")
    pairs = template.encode_multiturn(tokenizer, CHAT, system="S")
    assert prompt == pairs[0][0] + pairs[0][1] + pairs[1][0]
    assert response == pairs[1][1]
    assert tokenizer.decode(response) == "4<|im_end|>\n"


def test_glm4_efficient_eos_has_no_eos_in_answers(tokenizer):
    template = get_template("glm4", tokenizer)
    pairs = template.encode_multiturn(tokenizer, CHAT)
    assert template.efficient_eos is True
    assert decode_pairs(tokenizer, pairs)[0] == ("[gMASK]<sop><|user|>\nHi<|assistant|>", "\nHello!")


# ---- thinking (qwen3) ---------------------------------------------------------------------------------------

THINK = [user("Q1"), assistant("<think>\nr1\n</think>\n\nA1"), user("Q2"), assistant("A2")]


def test_qwen3_thinking_on_trains_an_empty_thought_when_missing(tokenizer):
    template = get_template("qwen3", tokenizer)
    texts = decode_pairs(tokenizer, template.encode_multiturn(tokenizer, THINK))
    assert texts[0][1] == "<think>\nr1\n</think>\n\nA1<|im_end|>\n"
    assert texts[1] == ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n",
                        "<think>\n\n</think>\n\nA2<|im_end|>\n")


def test_qwen3_thinking_off_removes_thoughts_and_puts_empty_one_in_prompt(tokenizer):
    template = get_template("qwen3", tokenizer, enable_thinking=False)
    texts = decode_pairs(tokenizer, template.encode_multiturn(tokenizer, THINK))
    assert texts[0][0].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert texts[0][1] == "A1<|im_end|>\n"
    assert texts[1][1] == "A2<|im_end|>\n"


def test_qwen3_discarding_history_cot_keeps_only_the_last_thought(tokenizer):
    template = get_template("qwen3", tokenizer)
    conversation = [user("Q1"), assistant("<think>\nr1\n</think>\n\nA1"), user("Q2"),
                    assistant("<think>\nr2\n</think>\n\nA2")]
    texts = decode_pairs(tokenizer, template.encode_multiturn(tokenizer, conversation, discarding_history_cot=True))
    assert texts[0][1] == "A1<|im_end|>\n"
    assert texts[1][1] == "<think>\nr2\n</think>\n\nA2<|im_end|>\n"


def test_thinking_options_do_not_touch_the_callers_messages(tokenizer):
    template = get_template("qwen3", tokenizer, enable_thinking=False)
    rows = json.loads(json.dumps(THINK))
    template.encode_multiturn(tokenizer, rows, discarding_history_cot=True)
    template.encode_oneturn(tokenizer, rows)
    assert rows == THINK


def test_qwen3_nothink_is_not_a_reasoning_template(tokenizer):
    template = get_template("qwen3_nothink", tokenizer)
    texts = decode_pairs(tokenizer, template.encode_multiturn(tokenizer, THINK))
    assert texts[1][1] == "A2<|im_end|>\n"


# ---- batch == per row ---------------------------------------------------------------------------------------

TOOLS = json.dumps([{"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": "City."}}, "required": ["city"]}}])


def random_rows(seed, count=40):
    rng = random.Random(seed)
    words = ["hello", "world", " ", "\n", "今天", "{{idx}}", "<|im_end|>", "  ", "x", "42", "<think>", "</think>"]
    rows = []
    for _ in range(count):
        turns = rng.randint(1, 3)
        messages = []
        for _ in range(turns):
            messages.append(user("".join(rng.choice(words) for _ in range(rng.randint(0, 6)))))
            messages.append(assistant("".join(rng.choice(words) for _ in range(rng.randint(0, 6)))))
        system = rng.choice(["", "You are helpful.", "You are helpful."])  # repeats exercise the dedupe
        tools = rng.choice(["", TOOLS])
        if tools and rng.random() < 0.5:
            messages = [user("weather?"), {"role": "function", "content": json.dumps(
                {"name": "get_weather", "arguments": {"city": "Paris"}})},
                {"role": "observation", "content": "22"}, assistant("22.")]
        rows.append((messages, system, tools))
    return rows


@pytest.mark.parametrize("name", ["qwen", "qwen3", "llama3", "llama2", "mistral", "glm4", "alpaca", "default",
                                  "gemma", "deepseek3"])
def test_batch_equals_per_row(tokenizer, name):
    template = get_template(name, tokenizer)
    rows = random_rows(seed=len(name))
    assert template.encode_multiturn_batch(tokenizer, rows) == [template.encode_multiturn(tokenizer, *row)
                                                               for row in rows]
    assert template.encode_oneturn_batch(tokenizer, rows) == [template.encode_oneturn(tokenizer, *row)
                                                             for row in rows]
    assert (template.encode_multiturn_batch(tokenizer, rows, discarding_history_cot=True)
            == [template.encode_multiturn(tokenizer, *row, discarding_history_cot=True) for row in rows])


def test_fast_path_tokenizes_like_encode(tokenizer):
    texts = ["<|im_start|>user\nHello world<|im_end|>\n", "  leading", "trailing  ", "今天\n\n", "{{content}}"]
    assert _plain_backend(tokenizer) is not None
    assert tokenize_texts(tokenizer, texts) == [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def test_tokenizer_call_is_used_when_the_backend_is_configured_differently(tokenizer):
    texts = ["<|im_start|>user\nHello world, a long sentence<|im_end|>\n", "short"]
    expected = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    tokenizer.backend_tokenizer.enable_truncation(3)  # transformers switches this off per call; the backend won't
    assert _plain_backend(tokenizer) is None
    assert tokenize_texts(tokenizer, texts) == expected


# ---- tokenizer fixing and registry --------------------------------------------------------------------------

def test_get_template_fixes_the_tokenizer_like_llamafactory(tokenizer):
    assert tokenizer.pad_token is None
    template = get_template("llama3", tokenizer)
    assert tokenizer.eos_token == "<|eot_id|>"  # replace_eos: the first stop word
    assert tokenizer.pad_token == "<|eot_id|>"  # no pad token: pad with eos
    assert "<|eom_id|>" in tokenizer.all_special_tokens  # the other stop words become special
    assert sorted(template.get_stop_token_ids(tokenizer)) == sorted(
        tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|eom_id|>"]))
    assert tokenizer.chat_template is not None  # an equivalent Jinja template for saving


def test_get_template_returns_a_copy(tokenizer):
    template = get_template("qwen", tokenizer, tool_format="default", default_system="Hi")
    assert template.default_system == "Hi" and template.function == ("{{content}}", EOS)
    assert TEMPLATES["qwen"].default_system.startswith("You are Qwen")
    assert TEMPLATES["qwen"].tool_format == "qwen"
    assert TEMPLATES["qwen"].function == ("{{content}}<|im_end|>\n",)


def test_unknown_template_names_the_closest(tokenizer):
    with pytest.raises(ConfigError) as err:
        get_template("qwen25", tokenizer)
    message = str(err.value)
    assert "template: unknown template 'qwen25'" in message
    assert "closest: qwen" in message and "template_names()" in message


def test_unknown_tool_format_lists_the_known_ones(tokenizer):
    with pytest.raises(ConfigError, match=r"tool_format: unknown tool_format 'qwen2'; closest: qwen.*known: default"):
        get_template("qwen", tokenizer, tool_format="qwen2")


def test_train_on_prompt_with_efficient_eos_is_a_config_error(tokenizer):
    with pytest.raises(ConfigError, match="train_on_prompt: the 'glm4' template .* set train_on_prompt: false"):
        get_template("glm4", tokenizer, train_on_prompt=True)


def test_no_name_and_no_chat_template_uses_empty(tokenizer):
    template = get_template(None, tokenizer)
    assert template.name == "empty"
    assert decode_pairs(tokenizer, template.encode_multiturn(tokenizer, CHAT[:2])) == [("Hi", "Hello!")]


def test_register_a_custom_template(tokenizer):
    register_template("tf_test_custom", user="<user>{{content}}\n<model>", assistant=["{{content}}", EOS, "\n"],
                      prefix="<s>")
    try:
        template = get_template("tf_test_custom", tokenizer)
        assert decode_pairs(tokenizer, template.encode_multiturn(tokenizer, CHAT[:2])) == [
            ("<s><user>Hi\n<model>", "Hello!<|endoftext|>\n")]
        with pytest.raises(ValueError, match="already registered"):
            register_template("tf_test_custom")
    finally:
        TEMPLATES.pop("tf_test_custom")
    with pytest.raises(ValueError, match=r"the user slots need a \{\{content\}\} placeholder"):
        register_template("tf_test_bad", user="no placeholder")


# ---- bad data -----------------------------------------------------------------------------------------------

def test_bad_tools_json_is_a_data_error(tokenizer):
    template = get_template("qwen", tokenizer)
    with pytest.raises(DataError, match=r"tools: not valid JSON .* expected a JSON list of tool declarations"):
        template.encode_multiturn(tokenizer, CHAT[:2], tools="[{oops")


def test_bad_function_call_is_a_data_error(tokenizer):
    template = get_template("qwen", tokenizer)
    bad = [user("hi"), {"role": "function", "content": '{"name": "f"}'}]
    with pytest.raises(DataError, match=r'function call turn: expected JSON \{"name": ..., "arguments"'):
        template.encode_multiturn(tokenizer, bad)


def test_odd_message_count_and_unknown_role_are_data_errors(tokenizer):
    template = get_template("qwen", tokenizer)
    with pytest.raises(DataError, match="got 3 messages"):
        template.encode_multiturn(tokenizer, CHAT[:3])
    with pytest.raises(DataError, match="message 1: unknown role 'bot'"):
        template.encode_multiturn(tokenizer, [user("a"), {"role": "bot", "content": "b"}])


def test_glm4_rejects_parallel_calls_with_a_data_error(tokenizer):
    template = get_template("glm4", tokenizer)
    calls = json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}])
    with pytest.raises(DataError, match="glm4 tool format allows one call per turn, got 2 .a, b."):
        template.encode_multiturn(tokenizer, [user("x"), {"role": "function", "content": calls}])


# ---- export ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["qwen", "llama3", "llama2", "mistral", "gemma", "default", "alpaca", "vicuna",
                                  "glm4", "cohere", "zephyr", "phi4", "empty"])
@pytest.mark.parametrize("system", ["", "Be kind."])
def test_jinja_export_renders_like_the_template(tokenizer, name, system):
    template = get_template(name, tokenizer)
    jinja = template.to_jinja(tokenizer)
    messages = ([{"role": "system", "content": system}] if system else []) + CHAT
    rendered = tokenizer.apply_chat_template(messages, chat_template=jinja, tokenize=False)
    assert rendered == render_text(template, tokenizer, CHAT, system=system)


def test_ollama_modelfile(tokenizer):
    template = get_template("qwen", tokenizer)
    modelfile = template.to_ollama_modelfile(tokenizer)
    assert ('TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
            '{{ range .Messages }}{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
            '<|im_start|>assistant\n{{ else if eq .Role "assistant" }}{{ .Content }}<|im_end|>\n{{ end }}{{ end }}"""'
            in modelfile)
    assert 'SYSTEM """You are Qwen, created by Alibaba Cloud. You are a helpful assistant."""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
