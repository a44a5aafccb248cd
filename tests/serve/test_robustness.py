"""The API probed as an attacker and as a crowd would (issue 19), on a uvicorn server on loopback serving the
tiny model: non-finite numbers, lone surrogates, malformed JSON, prompts beyond the context, too many
messages, oversized bodies, clients that hang up, images that are too big or unsupported, image URLs that
lead back into this machine, the default binding, and concurrent plain and streaming requests."""

import http.client as httpclient
import http.server as httpserver
import json
import socket
import struct
import threading
import time
import zlib
from urllib.parse import urlsplit

import openai
import pytest
import torch

from tuneforge.config import make_config
from tuneforge.config.generation import generation_settings, resolve_generation
from tuneforge.errors import ConfigError
from tuneforge.infer import ChatEngine
from tuneforge.serve import api_settings, create_app
from tuneforge.serve import remote
from tuneforge.serve.errors import APIError
from tuneforge.serve.media import ImageBudget, load_request_image
from tuneforge.serve.server import banner
from serve_helpers import http, scripted, serving

KEY, NAME = "secret-key", "tiny"
HELLO = [{"role": "user", "content": "Hello there"}]
LIMITS = {"API_MODEL_NAME": NAME, "API_KEY": KEY, "MAX_CONCURRENT": "4", "API_MAX_BODY_MB": "1",
          "API_MAX_MESSAGES": "64"}


@pytest.fixture(scope="module")
def engine(tiny_llama_dir):
    torch.set_num_threads(1)
    return ChatEngine(make_config(dict(model_name_or_path=str(tiny_llama_dir), template="qwen", do_sample=False,
                                       max_new_tokens=8)))


@pytest.fixture(scope="module")
def server(engine):
    app = create_app(engine, settings=api_settings(LIMITS))
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


def post(server, body=None, raw=None):
    return http("POST", server[1] + "/v1/chat/completions", body, key=KEY, raw=raw)


def wait_for(condition, what):
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# ---- malformed values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, raw", [
    ("temperature", "NaN"), ("temperature", "Infinity"), ("top_p", "NaN"), ("presence_penalty", "-Infinity"),
    ("max_tokens", "NaN"), ("max_tokens", "1.5"), ("max_tokens", '"many"'), ("n", "Infinity"),
])
def test_non_finite_and_mistyped_numbers_are_400_naming_the_field(server, field, raw):
    body = '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "%s": %s}' % (field, raw)
    status, answer = post(server, raw=body.encode())
    assert status == 400, answer
    assert answer["error"]["param"] == field
    assert answer["error"]["message"].startswith(f"invalid request: {field}: ")


def test_a_non_finite_config_value_is_refused_by_name():
    settings = generation_settings(make_config({"temperature": 0.7}).generate)
    with pytest.raises(ConfigError) as error:
        resolve_generation({**settings, "temperature": float("nan")})
    assert error.value.problems == ["temperature: nan is not a finite number; give a real number."]
    with pytest.raises(ConfigError, match=r"top_p: inf is not a finite number"):
        resolve_generation(settings, {"top_p": float("inf")})


@pytest.mark.parametrize("raw, param, position", [
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages.0.content", 1),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "ab\xed\xa0\x80"}]}', "messages.0.content", 2),
    (b'{"model": "tiny", "messages": [{"role": "system", "content": "ok"}, {"role": "user", "content": '
     b'[{"type": "text", "text": "\\udfff"}]}]}', "messages.1.content.0.text", 0),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stop": ["x\\ud800"]}', "stop.0", 1),
])
def test_a_lone_surrogate_is_400_naming_the_field(server, raw, param, position):
    status, answer = post(server, raw=raw)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["message"].startswith(f"{param}: character {position} is a lone UTF-16 surrogate")


def test_malformed_json_is_reported_by_line_and_column(server):
    status, answer = post(server, raw=b'{"model": "tiny",\n  "messages": [}')
    assert status == 400
    assert answer["error"]["param"] is None
    assert answer["error"]["message"] == ("the request body is not valid JSON: Expecting value at line 2, column 16; "
                                          "send one JSON object")


# ---- length and size caps -------------------------------------------------------------------------------

def test_the_context_is_the_models_position_count(engine):
    assert engine.context_length == engine.model.config.max_position_embeddings == 2048


def test_a_prompt_beyond_the_context_is_refused_with_its_token_count(server, engine, monkeypatch, generate_calls):
    monkeypatch.setattr(engine, "context_length", 64)
    long = [{"role": "user", "content": "word " * 200}]
    tokens = len(engine.build_prompt(long))
    status, answer = post(server, {"model": NAME, "messages": long})
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (400, "context_length_exceeded", "messages")
    assert answer["error"]["message"] == (f"messages: the prompt has {tokens} tokens and this model's context is 64 "
                                          "tokens, which leaves no room for an answer; shorten the conversation")
    assert tokens > 64 and not generate_calls


def test_max_tokens_that_do_not_fit_are_refused_as_openai_does(server, engine, monkeypatch, generate_calls):
    tokens = len(engine.build_prompt(HELLO))
    monkeypatch.setattr(engine, "context_length", tokens + 59)
    status, answer = post(server, {"model": NAME, "messages": HELLO, "max_tokens": 60})
    assert (status, answer["error"]["code"]) == (400, "context_length_exceeded")
    assert answer["error"]["message"] == (
        f"This model's maximum context length is {tokens + 59} tokens. However, you requested {tokens + 60} tokens ({tokens} in "
        "the messages, 60 in the completion). Please reduce the length of the messages or completion (max_tokens).")
    assert not generate_calls


def test_the_default_answer_length_is_capped_to_the_room_left(server, engine, monkeypatch, generate_calls, client):
    scripted(engine, monkeypatch, "word " * 40)
    tokens = len(engine.build_prompt(HELLO))
    monkeypatch.setattr(engine, "context_length", tokens + 3)  # the config's max_new_tokens is 8
    reply = client.chat.completions.create(model=NAME, messages=HELLO)
    assert (reply.choices[0].finish_reason, reply.usage.completion_tokens) == ("length", 3)
    assert generate_calls[0]["max_new_tokens"] == 3
    assert client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=3).usage.completion_tokens == 3


def test_too_many_messages_are_refused_before_encoding(server):
    turns = [{"role": "user" if index % 2 == 0 else "assistant", "content": "hi"} for index in range(65)]
    status, answer = post(server, {"model": NAME, "messages": turns})
    assert (status, answer["error"]["param"]) == (400, "messages")
    assert answer["error"]["message"] == ("messages: 65 messages are more than this server takes (64, "
                                          "API_MAX_MESSAGES); shorten the conversation")


def test_a_body_over_the_limit_is_413_declared_or_chunked(server):
    parts = urlsplit(server[1])
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:  # refused before the body
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\n")
        head, _, body = sock.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["error"]["message"] == ("the request body is larger than this server takes (1 MB, "
                                                    "API_MAX_BODY_MB); send smaller images or a shorter conversation")
    big = json.dumps({"model": NAME, "messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}).encode()
    connection = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=60)
    # The last chunk crosses the limit, so the whole body is sent before the server answers.
    chunks = [big[: 1024 * 1024 - 10], big[1024 * 1024 - 10:]]
    connection.request("POST", "/v1/chat/completions", body=iter(chunks), encode_chunked=True,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413 and "API_MAX_BODY_MB" in json.loads(response.read())["error"]["message"]
    connection.close()


# ---- clients that leave ----------------------------------------------------------------------------------

def test_a_plain_client_that_leaves_stops_its_generation(server, engine, monkeypatch, generate_calls, client,
                                                          caplog):
    scripted(engine, monkeypatch, "word " * 400)
    batcher, parts = server[0].state.batcher, urlsplit(server[1])
    started = len(batcher.batch_sizes)
    body = json.dumps({"model": NAME, "messages": HELLO, "max_tokens": 400}).encode()
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
    wait_for(lambda: len(batcher.batch_sizes) > started, "the generation started")
    sock.close()
    wait_for(lambda: generate_calls, "the generation ended")
    assert generate_calls[0]["new_tokens"] < 200, "the generation stopped when the client left"
    wait_for(lambda: server[0].state.admitted._value == 4, "the request's place was freed")
    assert client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=2).usage.completion_tokens == 2
    assert not [record for record in caplog.records if record.levelname == "ERROR"], "the server took it calmly"


def test_a_dropped_stream_frees_its_place(server, engine, monkeypatch, generate_calls, client):
    scripted(engine, monkeypatch, "word " * 400)
    stream = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=400, stream=True)
    assert next(stream).choices[0].delta.role == "assistant" and next(stream).choices[0].delta.content
    stream.close()
    wait_for(lambda: generate_calls, "the generation ended")
    assert generate_calls[0]["new_tokens"] < 200
    wait_for(lambda: server[0].state.admitted._value == 4, "the stream's place was freed")


def test_concurrent_plain_and_streaming_requests_are_all_answered(server, client):
    answers: dict = {}

    def plain(index):
        reply = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=4)
        answers[("plain", index)] = reply.choices[0].finish_reason

    def streamed(index):
        chunks = list(client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=4, stream=True))
        answers[("stream", index)] = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1]

    threads = [threading.Thread(target=job, args=(index,)) for index in range(8) for job in (plain, streamed)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 16 and set(answers.values()) <= {"stop", "length"}
    # A slot is released just after its response is sent, so the last one may still be on its way back.
    state = server[0].state
    for _ in range(200):
        if state.admitted._value == 4 and state.batcher.waiting() == 0:
            break
        time.sleep(0.05)
    assert state.admitted._value == 4 and state.batcher.waiting() == 0


# ---- auth and binding -----------------------------------------------------------------------------------

def test_the_key_is_compared_in_constant_time(server, monkeypatch):
    import hmac

    compared = []
    original = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or original(a, b))
    assert http("GET", server[1] + "/v1/models", key="wrong")[0] == 401
    assert http("GET", server[1] + "/v1/models", key=KEY)[0] == 200
    assert compared == [(b"wrong", KEY.encode()), (KEY.encode(), KEY.encode())]


def test_the_server_binds_loopback_unless_told_and_says_where(tmp_path):
    default = api_settings({})
    assert (default.host, default.exposed, default.allow_local_files) == ("127.0.0.1", False, False)
    assert banner(default) == ("Serving 'gpt-3.5-turbo' at http://127.0.0.1:8000/v1 "
                               "(API docs: http://127.0.0.1:8000/docs)")
    exposed = banner(api_settings({"API_HOST": "0.0.0.0", "API_PORT": "9000"}))
    assert exposed.splitlines()[:2] == ["Serving 'gpt-3.5-turbo' at http://0.0.0.0:9000/v1 "
                                        "(API docs: http://0.0.0.0:9000/docs)",
                                        "Listening on every network interface of this machine (0.0.0.0)."]
    assert exposed.splitlines()[2].startswith("WARNING: API_HOST=0.0.0.0 serves other machines and API_KEY is not "
                                              "set: anyone who can reach this port can use the model.")
    assert "WARNING" not in banner(api_settings({"API_HOST": "0.0.0.0", "API_KEY": "k"}))
    assert "http://[::1]:8000/v1" in banner(api_settings({"API_HOST": "::1"}))
    with pytest.raises(ConfigError, match=r"ALLOW_LOCAL_FILES='maybe': expected 1 or 0"):
        api_settings({"ALLOW_LOCAL_FILES": "maybe"})


# ---- images ---------------------------------------------------------------------------------------------

RED_PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/"
             "pLvAAAAAElFTkSuQmCC")


def png_claiming(width, height):
    """A valid PNG header that claims width x height pixels, with almost no pixel data behind it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def data_url(data):
    import base64

    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_a_text_model_refuses_an_image_before_reading_it(server, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("the image must not be decoded"))
    status, answer = post(server, {"model": NAME, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": RED_PIXEL}}]}]})
    assert (status, answer["error"]["param"]) == (400, "messages.0.content.0")
    assert answer["error"]["message"].startswith("messages.0.content.0: this server cannot take images: the 'qwen' "
                                                 "template has no media support")


def test_a_huge_image_is_refused_from_its_header(monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the pixels must not be decoded"))
    budget = ImageBudget(api_settings({}))
    with pytest.raises(APIError) as error:
        load_request_image(data_url(png_claiming(13000, 13000)), "img", budget)
    assert (error.value.status, error.value.param) == (400, "img")
    assert error.value.message.startswith("img: the image is 13000x13000 pixels, more than this request may still "
                                          "have (50000000 of API_MAX_IMAGE_PIXELS=50000000)")


def test_images_share_one_pixel_budget_and_each_has_a_byte_cap():
    budget = ImageBudget(api_settings({"API_MAX_IMAGE_PIXELS": "5"}))
    assert load_request_image(RED_PIXEL, "a", budget).size == (1, 1)
    assert budget.pixels_left == 4
    with pytest.raises(APIError, match=r"b: the image is 3x3 pixels, more than this request may still have \(4 of"):
        load_request_image(data_url(png_claiming(3, 3)), "b", budget)
    small = ImageBudget(api_settings({"API_MAX_IMAGE_MB": "1"}))
    with pytest.raises(APIError, match=r"c: the image has more than 1 MB \(API_MAX_IMAGE_MB\)"):
        load_request_image(data_url(b"\x00" * (1024 * 1024 + 10)), "c", small)


# ---- image URLs -----------------------------------------------------------------------------------------

PNG = png_claiming(2, 2)
PUBLIC = "93.184.216.34"  # a public address the fake resolver hands out


@pytest.fixture(scope="module")
def image_host():
    """A local HTTP server: /img.png is an image, /bounce redirects to it by 127.0.0.1; records Host headers."""
    hosts = []

    class Handler(httpserver.BaseHTTPRequestHandler):
        def do_GET(self):
            hosts.append(self.headers["Host"])
            if self.path == "/bounce":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/img.png")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args):
            pass

    httpd = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], hosts
    httpd.shutdown()


@pytest.fixture
def fake_dns(monkeypatch):
    """cdn.example resolves to PUBLIC (then to 127.0.0.1, as a rebinding name would); connections to PUBLIC
    reach the local image server. Records every lookup and connection."""
    lookups, connections = [], []
    answers = {"cdn.example": [[PUBLIC], ["127.0.0.1"]], "mixed.example": [[PUBLIC, "10.0.0.5"]]}

    def resolve(host, port):
        lookups.append(host)
        if host in answers:
            return answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [host]  # an address literal

    def connect(address, port, timeout):
        connections.append(address)
        return socket.create_connection(("127.0.0.1" if address == PUBLIC else address, port), timeout)

    monkeypatch.setattr(remote, "_resolve", resolve)
    monkeypatch.setattr(remote, "_connect", connect)
    return lookups, connections


def test_an_image_url_is_fetched_from_the_address_it_was_checked_at(image_host, fake_dns):
    port, hosts = image_host
    lookups, connections = fake_dns
    data = remote.fetch_image(f"http://cdn.example:{port}/img.png", "img", api_settings({}))
    assert data == PNG
    assert (lookups, connections, hosts[-1]) == (["cdn.example"], [PUBLIC], f"cdn.example:{port}")


def test_a_redirect_to_loopback_is_refused_before_connecting(image_host, fake_dns):
    port, _hosts = image_host
    lookups, connections = fake_dns
    with pytest.raises(APIError) as error:
        remote.fetch_image(f"http://cdn.example:{port}/bounce", "img", api_settings({}))
    assert error.value.status == 403
    assert error.value.message == (f"img: 'http://127.0.0.1:{port}/img.png' points to 127.0.0.1, a loopback, "
                                   "private, link-local or reserved address; image URLs must be public "
                                   "(ALLOW_PRIVATE_URLS=1 allows them)")
    assert connections == [PUBLIC], "nothing connected to 127.0.0.1"


def test_private_addresses_are_refused_unless_allowed(image_host, fake_dns):
    port, _hosts = image_host
    for url in (f"http://127.0.0.1:{port}/img.png", f"http://mixed.example:{port}/img.png",
                f"http://[::ffff:127.0.0.1]:{port}/img.png", "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(APIError) as error:
            remote.fetch_image(url, "img", api_settings({}))
        assert error.value.status == 403, url
    allowed = api_settings({"ALLOW_PRIVATE_URLS": "1"})
    assert remote.fetch_image(f"http://cdn.example:{port}/bounce", "img", allowed) == PNG
    assert fake_dns[1] == [PUBLIC, "127.0.0.1"]


def test_remote_urls_can_be_switched_off():
    budget = ImageBudget(api_settings({"ALLOW_REMOTE_URLS": "0"}))
    with pytest.raises(APIError, match=r"image URLs are disabled on this server \(ALLOW_REMOTE_URLS=0\)"):
        load_request_image("https://example.com/a.png", "img", budget)
