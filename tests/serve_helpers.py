"""Helpers shared by the inference and API tests: a scripted answer, a uvicorn server on a free loopback
port, and raw HTTP calls. (The tiny chat model is the session fixture `tiny_llama_dir`, tests/conftest.py.)"""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager


def scripted(engine, monkeypatch, text):
    """Make generate write `text` then the stop token, through the real generate loop (each step's token
    is forced with prefix_allowed_tokens_fn), so stop handling and decoding run on known output.
    Returns the scripted token ids."""
    script = engine.tokenizer(text, add_special_tokens=False)["input_ids"] + [engine.stop_token_ids[0]]
    original = engine._generate

    def forced(input_ids, attention_mask=None, kwargs=None, **extra):
        width = input_ids.shape[1]

        def allowed(_batch_id, row):
            return [script[min(row.shape[0] - width, len(script) - 1)]]

        return original(input_ids, attention_mask, {**kwargs, "prefix_allowed_tokens_fn": allowed}, **extra)

    monkeypatch.setattr(engine, "_generate", forced)
    return script


@contextmanager
def serving(app):
    """Run the app with uvicorn in a thread on a free 127.0.0.1 port; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs=dict(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def http(method, url, body=None, key=None, raw=None):
    """(status, parsed JSON body) of one request; `raw` sends bytes as they are."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
