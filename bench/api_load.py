"""API load probe (issue 19; not a test): a crowd of concurrent plain and streaming requests, and the
probes that used to hold the server up, against `tuneforge api`'s app on a loopback port.

    python bench/api_load.py [--plain 32] [--streams 32] [--max-tokens 32] [--max-concurrent 4]

Serves the tiny test model (tuneforge.testing.tiny_model, 2048 positions, template qwen, greedy) and reports:
  - answered / sent for `--plain` plain and `--streams` streaming requests sent at once, and their wall time;
  - the process's RSS before, after the crowd, and after a second crowd (growth would be a leak);
  - how long a 60k-token prompt takes to be refused (it used to block every client for minutes);
  - plain clients that hang up mid-answer: the tokens their generations ran to, and whether the
    server's places (MAX_CONCURRENT) were all free again;
  - a real 13000 x 13000 PNG sent to a tiny Qwen2-VL server, alone and 6 at once: status, time, RSS.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def crowd(url: str, plain: int, streams: int, max_tokens: int) -> tuple[int, int, float]:
    """(answered plain, answered streams, seconds) for requests all sent at once."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    done = {"plain": 0, "stream": 0}
    lock = threading.Lock()

    def ask(index: int, stream: bool) -> None:
        messages = [{"role": "user", "content": f"Tell me about the number {index}."}]
        if stream:
            chunks = list(client.chat.completions.create(model="load", messages=messages, max_tokens=max_tokens,
                                                         stream=True))
            ok = chunks and [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] is not None
        else:
            reply = client.chat.completions.create(model="load", messages=messages, max_tokens=max_tokens)
            ok = reply.choices[0].finish_reason is not None
        if ok:
            with lock:
                done["stream" if stream else "plain"] += 1

    threads = [threading.Thread(target=ask, args=(index, False)) for index in range(plain)]
    threads += [threading.Thread(target=ask, args=(index, True)) for index in range(streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done["plain"], done["stream"], time.perf_counter() - start


def hang_ups(url: str, app, engine, count: int) -> tuple[int, list[int]]:
    """(tokens of the answer when the client waits, tokens generated for each of `count` plain clients that
    hang up as soon as their generation has started)."""
    from serve_helpers import http

    generated: list[int] = []
    original = engine.model.generate

    def spy(**kwargs):
        output = original(**kwargs)
        generated.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    request = {"model": "load", "messages": [{"role": "user", "content": "Count to a thousand."}], "max_tokens": 1500}
    body = json.dumps(request).encode()
    parts = urlsplit(url)
    engine.model.generate = spy
    try:
        full = http("POST", url + "/v1/chat/completions", request)[1]["usage"]["completion_tokens"]
        for _ in range(count):
            started, ended = len(app.state.batcher.batch_sizes), len(generated)
            sock = socket.create_connection((parts.hostname, parts.port))
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            while len(app.state.batcher.batch_sizes) == started:
                time.sleep(0.005)
            time.sleep(0.05)
            sock.close()
            while len(generated) == ended:
                time.sleep(0.01)
    finally:
        del engine.model.generate
    return full, generated[1:]


def huge_images(parallel: int) -> None:
    """A real 13000 x 13000 PNG (the issue's probe) sent to a vision-language server, alone and `parallel` at
    once: the answer, its time and the RSS growth (the header says the size, so nothing is decoded)."""
    import base64
    import io

    from PIL import Image

    from serve_helpers import http, serving
    from tuneforge.config import make_config
    from tuneforge.infer import ChatEngine
    from tuneforge.serve import api_settings, create_app
    from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl

    buffer = io.BytesIO()
    Image.new("RGB", (13000, 13000), (200, 30, 30)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = {"model": "vl", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]}]}
    with tempfile.TemporaryDirectory() as model_dir:
        build_tiny_qwen2_vl(Path(model_dir))
        engine = ChatEngine(make_config(dict(model_name_or_path=model_dir, template="qwen2_vl", do_sample=False,
                                             max_new_tokens=4)))
        app = create_app(engine, settings=api_settings({"API_MODEL_NAME": "vl"}))
        with serving(app) as server_url:
            before = rss_mb()
            start = time.perf_counter()
            status, answer = http("POST", server_url + "/v1/chat/completions", body)
            alone = time.perf_counter() - start
            results: list[int] = []
            threads = [threading.Thread(target=lambda: results.append(
                http("POST", server_url + "/v1/chat/completions", body)[0])) for _ in range(parallel)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            together = time.perf_counter() - start
            print(f"13000x13000 PNG ({len(buffer.getvalue()) / 1024:.0f} KB): HTTP {status} in {alone:.2f} s "
                  f"({answer['error']['message'][:90]}...); {parallel} at once: {sorted(results)} in {together:.2f} s; "
                  f"RSS {before:.0f} MB -> {rss_mb():.0f} MB", flush=True)
        app.state.batcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", type=int, default=32)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-concurrent", type=int, default=4)
    args = parser.parse_args()

    import torch

    from serve_helpers import http, serving
    from tuneforge.config import make_config
    from tuneforge.infer import ChatEngine
    from tuneforge.serve import api_settings, create_app
    from tuneforge.testing.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as model_dir:
        build_tiny_model(Path(model_dir))
        engine = ChatEngine(make_config(dict(model_name_or_path=model_dir, template="qwen", do_sample=False,
                                             max_new_tokens=64)))
        app = create_app(engine, settings=api_settings({"API_MODEL_NAME": "load",
                                                        "MAX_CONCURRENT": str(args.max_concurrent)}))
        with serving(app) as url:
            http("POST", url + "/v1/chat/completions", {"model": "load", "messages": [
                {"role": "user", "content": "warm up"}], "max_tokens": 4})
            before = rss_mb()
            for round_ in (1, 2):
                plain, streams, seconds = crowd(url, args.plain, args.streams, args.max_tokens)
                print(f"crowd {round_}: {plain}/{args.plain} plain and {streams}/{args.streams} streaming answered "
                      f"in {seconds:.1f} s (MAX_CONCURRENT={args.max_concurrent}, max_tokens={args.max_tokens}); "
                      f"RSS {before:.0f} MB before -> {rss_mb():.0f} MB", flush=True)
            start = time.perf_counter()
            status, body = http("POST", url + "/v1/chat/completions", {"model": "load", "messages": [
                {"role": "user", "content": "word " * 60000}]})
            print(f"60k-word prompt: HTTP {status} in {time.perf_counter() - start:.2f} s: "
                  f"{body['error']['message'][:110]}", flush=True)
            full, tokens = hang_ups(url, app, engine, 4)
            time.sleep(0.2)
            free = app.state.admitted._value == args.max_concurrent
            print(f"the answer to a client that waits: {full} tokens; 4 plain clients that hung up 50 ms into "
                  f"generation: {tokens} tokens; all {args.max_concurrent} places free again: {free}", flush=True)
        app.state.batcher.close()
    huge_images(6)


if __name__ == "__main__":
    main()
