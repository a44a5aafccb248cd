"""ChatEngine on a tiny random model: the prompt is the template's, greedy answers are exactly
model.generate's, streaming matches, generation arguments and stop tokens reach generate."""

import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config import make_config
from tuneforge.data.templates import get_template
from tuneforge.errors import ConfigError, DataError
from tuneforge.infer import ChatEngine

QWEN_SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir):
    torch.set_num_threads(1)
    return ChatEngine(make_config(dict(model_name_or_path=str(tiny_llama_dir), template="qwen", do_sample=False,
                                       max_new_tokens=12)))


@pytest.fixture
def generate_calls(engine, monkeypatch):
    """Every model.generate call's kwargs plus "new_tokens", how many it generated (the call still runs)."""
    calls = []
    original = engine.model.generate

    def spy(**kwargs):
        output = original(**kwargs)
        calls.append({**kwargs, "new_tokens": output.shape[1] - kwargs["input_ids"].shape[1]})
        return output

    monkeypatch.setattr(engine.model, "generate", spy)
    return calls


def _greedy_with_plain_transformers(tiny_llama_dir, prompt_ids, stop_ids, max_new_tokens):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    output = model.generate(input_ids=torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids),
                            dtype=torch.long), do_sample=False, max_new_tokens=max_new_tokens,
                            eos_token_id=stop_ids, pad_token_id=stop_ids[0])
    return output[0, len(prompt_ids):].tolist()


def test_the_prompt_is_the_templates_encode_oneturn_prompt(engine, tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    template = get_template("qwen", tokenizer)
    expected, _ = template.encode_oneturn(tokenizer, [*HELLO, {"role": "assistant", "content": ""}])
    prompt = engine.build_prompt(HELLO)
    assert prompt == expected
    assert engine.tokenizer.decode(prompt) == (QWEN_SYSTEM + "<|im_start|>user\nHello there<|im_end|>\n"
                                               "<|im_start|>assistant\n")


def test_system_and_history_go_into_the_prompt(engine):
    history = [*HELLO, {"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "Add 2"}]
    assert engine.tokenizer.decode(engine.build_prompt(history, system="Be brief.")) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
        "Hi! How can I help?<|im_end|>\n<|im_start|>user\nAdd 2<|im_end|>\n<|im_start|>assistant\n")


def test_default_system_from_the_config(tiny_llama_dir):
    engine = ChatEngine(make_config(dict(model_name_or_path=str(tiny_llama_dir), template="qwen",
                                         default_system="Be brief.")))
    assert engine.tokenizer.decode(engine.build_prompt(HELLO)).startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_greedy_answer_is_deterministic_and_equals_plain_generate(engine, tiny_llama_dir):
    prompt = engine.build_prompt(HELLO)
    answer_ids = _greedy_with_plain_transformers(tiny_llama_dir, prompt, engine.stop_token_ids, 12)
    response = engine.respond(HELLO)
    assert response.text == engine.tokenizer.decode(answer_ids, skip_special_tokens=True)
    assert (response.prompt_length, response.response_length) == (len(prompt), len(answer_ids))
    assert engine.chat(HELLO) == response.text != ""


def test_stream_pieces_join_to_the_whole_answer(engine):
    pieces = list(engine.stream_chat(HELLO))
    assert len(pieces) > 1
    assert "".join(pieces) == engine.chat(HELLO)
    assert "".join(engine.stream_chat(HELLO, max_new_tokens=30)) == engine.chat(HELLO, max_new_tokens=30)


def test_history_reaches_generate(engine, generate_calls):
    first = engine.chat(HELLO)
    history = [*HELLO, {"role": "assistant", "content": first}, {"role": "user", "content": "And then?"}]
    engine.chat(history)
    second_prompt = generate_calls[1]["input_ids"][0].tolist()
    assert second_prompt == engine.build_prompt(history)
    assert first in engine.tokenizer.decode(second_prompt)


def test_generation_arguments_reach_generate(engine, generate_calls):
    engine.chat(HELLO)
    engine.chat(HELLO, do_sample=True, temperature=0.5, top_p=0.9, top_k=7, repetition_penalty=1.3)
    greedy, sampled = generate_calls
    assert {key: greedy[key] for key in ("do_sample", "num_beams", "repetition_penalty", "max_new_tokens")} == dict(
        do_sample=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=12)
    assert not {"temperature", "top_p", "top_k", "length_penalty", "max_length"} & set(greedy)
    assert {key: sampled[key] for key in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")} == dict(
        do_sample=True, temperature=0.5, top_p=0.9, top_k=7, repetition_penalty=1.3)
    assert greedy["eos_token_id"] == engine.stop_token_ids


def test_token_limits(engine):
    assert engine.respond(HELLO, max_new_tokens=3).response_length <= 3
    short = engine.respond(HELLO, max_new_tokens=3)
    assert (short.response_length, short.finish_reason) == (3, "length")
    prompt_length = len(engine.build_prompt(HELLO))
    assert engine.respond(HELLO, max_length=prompt_length + 2).response_length == 2


def test_stop_tokens_are_the_templates_and_end_the_answer(engine):
    im_end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert engine.stop_token_ids == [im_end] and engine.tokenizer.eos_token == "<|im_end|>"
    # Make the first greedy token a stop token: the answer is that one token, reported as a stop.
    prompt = engine.build_prompt(HELLO)
    first_token = engine._generate(prompt, dict(do_sample=False, max_new_tokens=1, pad_token_id=im_end))[0, -1]
    stopper = ChatEngine(engine.cfg, model=engine.model, tokenizer=engine.tokenizer, template=engine.template)
    stopper.stop_token_ids = [int(first_token)]
    response = stopper.respond(HELLO)
    assert (response.response_length, response.finish_reason) == (1, "stop")


def test_beam_search_streams_its_answer_in_one_piece(engine):
    beams = engine.chat(HELLO, num_beams=2, max_new_tokens=6)
    assert list(engine.stream_chat(HELLO, num_beams=2, max_new_tokens=6)) == [beams]


def test_closing_a_stream_stops_generation(engine, generate_calls):
    stream = engine.stream_chat(HELLO, max_new_tokens=300, repetition_penalty=1.5)
    next(stream)
    stream.close()
    assert engine._lock.acquire(timeout=10)  # the generation thread has finished
    engine._lock.release()
    full = engine.respond(HELLO, max_new_tokens=300, repetition_penalty=1.5)
    assert full.response_length == 300, "the uncancelled answer runs to the limit"
    streamed, _ = generate_calls
    assert streamed["new_tokens"] < 100


def test_a_failure_in_the_generation_thread_reaches_the_reader(engine, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine.model, "generate", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        list(engine.stream_chat(HELLO))
    assert not [t for t in threading.enumerate() if t.name == "tuneforge-generate"]


@pytest.mark.parametrize("messages, message", [
    ([], "messages: expected a non-empty list"),
    ([{"role": "assistant", "content": "hi"}], "messages[0]: role 'assistant' is out of place"),
    ([{"role": "system", "content": "be nice"}, *HELLO], "put a system prompt in `system`"),
    ([{"role": "user", "content": None}], "messages[0]: expected {\"role\": ..., \"content\": \"text\"}"),
    ([*HELLO, {"role": "assistant", "content": "hi"}], "ends with an assistant message; add the user message"),
])
def test_bad_messages_are_data_errors(engine, messages, message):
    with pytest.raises(DataError) as error:
        engine.chat(messages)
    assert message in str(error.value)


def test_bad_requests_fail_before_streaming(engine):
    with pytest.raises(ConfigError, match=r"top_p: 2 must be in \(0, 1\]"):
        engine.stream_chat(HELLO, top_p=2)
    with pytest.raises(DataError):
        engine.stream_chat([])


def test_bad_config_values_fail_before_loading():
    with pytest.raises(ConfigError, match="top_p: 0.0 must be in"):
        ChatEngine(make_config(dict(model_name_or_path="/nonexistent/model", top_p=0.0)))
