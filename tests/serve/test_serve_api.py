"""The OpenAI-compatible API, driven by the official `openai` client (and raw HTTP for malformed requests)
against a uvicorn server on a loopback port, serving a tiny model: models, plain and streamed answers
(equal to the engine's), sampling arguments, stop, tools, auth, errors, and batched concurrent requests."""

import json
import threading
import time

import openai
import pytest
import torch

from tuneforge.config import make_config
from tuneforge.infer import ChatEngine
from tuneforge.serve import api_settings, create_app
from serve_helpers import http, scripted, serving

KEY, NAME = "secret-key", "tiny"
HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def engine(tiny_llama_dir):
    torch.set_num_threads(1)
    return ChatEngine(make_config(dict(model_name_or_path=str(tiny_llama_dir), template="qwen", do_sample=False,
                                       max_new_tokens=8)))


@pytest.fixture(scope="module")
def server(engine):
    app = create_app(engine, settings=api_settings({"API_MODEL_NAME": NAME, "API_KEY": KEY, "MAX_CONCURRENT": "4"}))
    with serving(app) as url:
        yield app, url
    app.state.batcher.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def generate_calls(engine, monkeypatch):
    calls = []
    original = engine.model.generate

    def spy(**kwargs):
        output = original(**kwargs)
        calls.append({**kwargs, "new_tokens": output.shape[1] - kwargs["input_ids"].shape[1]})
        return output

    monkeypatch.setattr(engine.model, "generate", spy)
    return calls


def test_models_lists_the_served_name(client):
    assert [model.id for model in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).id == NAME


def test_an_answer_is_the_engines_greedy_answer_with_usage(client, engine):
    expected = engine.respond(HELLO)
    reply = client.chat.completions.create(model=NAME, messages=HELLO)
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant", expected.text, expected.finish_reason)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        expected.prompt_length, expected.response_length, expected.prompt_length + expected.response_length)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")


def test_a_stream_carries_the_same_answer_in_pieces(client, engine):
    chunks = list(client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    deltas = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(deltas) > 1 and "".join(deltas) == engine.chat(HELLO, max_new_tokens=12)
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12


def test_system_n_and_sampling_arguments_reach_generate(client, engine, generate_calls):
    reply = client.chat.completions.create(
        model=NAME, messages=[{"role": "system", "content": "Be brief."}, *HELLO], n=3, temperature=0.7,
        top_p=0.9, max_tokens=5, extra_body={"do_sample": True})  # the config says greedy; LF's do_sample overrides
    assert [choice.index for choice in reply.choices] == [0, 1, 2]
    (call,) = generate_calls
    prompt = engine.build_prompt(HELLO, system="Be brief.")
    assert call["input_ids"].tolist() == [prompt] * 3
    assert {key: call[key] for key in ("do_sample", "temperature", "top_p", "max_new_tokens")} == dict(
        do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=5)
    # Sampling may draw a stop token early; every answer cut by the limit has exactly 5 tokens.
    cut = [choice.finish_reason for choice in reply.choices].count("length")
    assert 5 * cut <= reply.usage.completion_tokens <= 3 * 5
    assert cut < 3 or reply.usage.completion_tokens == 3 * 5
    client.chat.completions.create(model=NAME, messages=HELLO, presence_penalty=1.5)
    assert generate_calls[-1]["logits_processor"][0].penalty == 1.5


def test_stop_cuts_the_answer_plain_and_streamed(client, engine, monkeypatch):
    scripted(engine, monkeypatch, "Paris is nice. The end")
    reply = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=40, stop=". The")
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("Paris is nice", "stop")
    stream = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=40, stop=["nice"], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "Paris is "


def test_a_tool_call_comes_back_as_tool_calls(client, engine, monkeypatch, generate_calls):
    scripted(engine, monkeypatch, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat.completions.create(model=NAME, messages=ask, tools=[WEATHER_TOOL], max_tokens=60)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == (
        "function", "get_weather", {"city": "Paris"})
    prompt = engine.tokenizer.decode(generate_calls[0]["input_ids"][0])
    assert "# Tools" in prompt and '"name": "get_weather"' in prompt

    chunks = list(client.chat.completions.create(model=NAME, messages=ask, tools=[WEATHER_TOOL], max_tokens=60,
                                                 stream=True))
    calls = [call for chunk in chunks for call in (chunk.choices[0].delta.tool_calls or [])]
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_tool_result_conversation_is_encoded_by_the_template(client, engine, generate_calls):
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                   "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"}]
    client.chat.completions.create(model=NAME, messages=history, tools=[WEATHER_TOOL])
    prompt = engine.tokenizer.decode(generate_calls[0]["input_ids"][0])
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nSunny, 21C\n</tool_response><|im_end|>\n'
            '<|im_start|>assistant\n') in prompt


def test_a_client_that_leaves_a_stream_stops_its_generation(client, engine, monkeypatch, generate_calls):
    scripted(engine, monkeypatch, "word " * 400)
    stream = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=400, stream=True)
    assert next(stream).choices[0].delta.role == "assistant" and next(stream).choices[0].delta.content
    stream.close()
    deadline = time.monotonic() + 60
    while not generate_calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert generate_calls[0]["new_tokens"] < 200, "generation stopped when the client left"


def test_a_wrong_or_missing_key_is_401(server):
    bad = openai.OpenAI(base_url=server[1] + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        bad.models.list()
    assert error.value.status_code == 401 and error.value.body["code"] == "invalid_api_key"
    status, body = http("POST", server[1] + "/v1/chat/completions", {"model": NAME, "messages": HELLO})
    assert status == 401 and "Authorization: Bearer" in body["error"]["message"]


RED_PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/"
             "pLvAAAAAElFTkSuQmCC")


@pytest.mark.parametrize("body, status, fragment", [
    ({"model": "gpt-4", "messages": HELLO}, 404, "the model 'gpt-4' does not exist; this server serves 'tiny'"),
    ({"model": NAME, "messages": []}, 400, "messages: expected a non-empty list"),
    ({"model": NAME, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "role 'assistant' is out of place"),
    ({"model": NAME, "messages": HELLO, "top_p": 2}, 400, "top_p: 2.0 must be in (0, 1]"),
    ({"model": NAME, "messages": HELLO, "temperature": -1}, 400, "temperature: -1.0 is negative"),
    ({"model": NAME, "messages": HELLO, "max_tokens": 0}, 400, "max_tokens: Input should be greater than or equal"),
    ({"model": NAME}, 400, "messages: Field required"),
    ({"model": NAME, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
    ({"model": NAME, "messages": HELLO, "frequency_penalty": 0.5}, 400, "frequency_penalty is not supported"),
    ({"model": NAME, "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop: give up to 4"),
    ({"model": NAME, "messages": HELLO, "n": 9}, 400, "n: 9 answers exceed this server's batch of 4"),
    ({"model": NAME, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]}, 400, "template has no media support"),
    ({"model": NAME, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": RED_PIXEL}}]}]}, 400, "template has no media support"),
    ({"model": NAME, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}, 400, "template has no media support"),
    ({"model": NAME, "messages": [HELLO[0], {"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "f", "arguments": "{not json"}}]}, HELLO[0]]}, 400, "messages.1.tool_calls.0.function.arguments"),
])
def test_bad_requests_get_openai_error_json(server, body, status, fragment):
    got, answer = http("POST", server[1] + "/v1/chat/completions", body, key=KEY)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert fragment in answer["error"]["message"]


def test_malformed_bodies_and_unknown_routes(server):
    status, body = http("POST", server[1] + "/v1/chat/completions", raw=b"{not json", key=KEY)
    assert status == 400 and "the request body is not valid JSON: Expecting property name" in body["error"]["message"]
    status, body = http("GET", server[1] + "/v1/nothing", key=KEY)
    assert status == 404 and "this API serves GET /v1/models" in body["error"]["message"]
    status, body = http("POST", server[1] + "/v1/score/evaluation", {"model": NAME, "messages": ["a"]}, key=KEY)
    assert status == 405 and "needs a reward model (stage rm output)" in body["error"]["message"]


def test_concurrent_requests_are_queued_batched_and_answered_as_if_alone(server, engine, client):
    app = server[0]
    questions = ["Hello there", "What is the capital of France?", "2+2", "Tell me a long story about a cat", "Hi"]
    expected = [engine.chat([{"role": "user", "content": q}], max_new_tokens=6) for q in questions]
    batcher = app.state.batcher
    answers, before, submitted = {}, len(batcher.batch_sizes), batcher.submitted

    def ask(index):
        reply = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": questions[index]}],
                                               max_tokens=6)
        answers[index] = reply.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(questions))]
    with engine._lock:  # the model is busy: the first batch waits on it, the other admitted requests queue
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while batcher.submitted - submitted < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert batcher.submitted - submitted == 4, "MAX_CONCURRENT=4 admits four requests; the fifth waits"
    for thread in threads:
        thread.join(timeout=120)
    assert answers == dict(enumerate(expected))
    sizes = batcher.batch_sizes[before:]
    assert sum(sizes) == 5 and max(sizes) <= 4, sizes  # MAX_CONCURRENT=4 bounds every batch
    assert sizes[0] + sizes[1] >= 4, sizes  # the four admitted requests took two generate calls at most
