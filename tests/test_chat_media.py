"""Chat with media: a tiny Qwen2.5-VL answers differently for two images through `tuneforge chat --image` and
through the API's `image_url`; video_url / input_audio / audio_url parts reach the engine's RowMedia (and a
model that takes only images refuses them with a 400 naming the part)."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tuneforge import cli
from tuneforge.data.media.base import RowMedia
from tuneforge.serve import api_settings, create_app
from tuneforge.serve.messages import convert_request
from tuneforge.serve.protocol import ChatCompletionRequest
from tuneforge.testing.tiny_vl_qwen import build_tiny_qwen2_5_vl
from serve_helpers import http, serving

QUESTION = "What is this?"


def _data_url(kind, mime, data):
    return f"data:{kind}/{mime};base64," + base64.b64encode(data).decode()


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wav(samples):
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(samples, dtype=np.float32), 16000, format="WAV")
    return buffer.getvalue()


def _mp4():
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width = stream.height = 32
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 90 * index, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def vl25(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tiny_qwen2_5_vl")
    build_tiny_qwen2_5_vl(path)
    images = {"red": Image.new("RGB", (56, 56), (255, 0, 0)), "stripes": Image.new("RGB", (84, 56), (0, 0, 255))}
    for x in range(0, 84, 4):
        for y in range(56):
            images["stripes"].putpixel((x, y), (255, 255, 255))
    for name, image in images.items():
        image.save(path / f"{name}.png")
    config = path / "chat.yaml"
    config.write_text(f"model_name_or_path: {path}\ntemplate: qwen2_vl\ndo_sample: false\nmax_new_tokens: 8\n")
    return path, config


def test_cli_chat_and_api_answer_differently_for_two_images(vl25, capsys):
    path, config = vl25
    answers = {}
    for name in ("red", "stripes"):
        assert cli.main(["chat", str(config), "--image", str(path / f"{name}.png"), "--message", QUESTION]) == 0
        answers[name] = capsys.readouterr().out.rstrip("\n")
    assert answers["red"] != answers["stripes"], answers

    from tuneforge.infer import ChatEngine
    from tuneforge.config import make_config

    engine = ChatEngine(make_config(dict(model_name_or_path=str(path), template="qwen2_vl", do_sample=False,
                                         max_new_tokens=8)))
    app = create_app(engine, settings=api_settings({"API_MODEL_NAME": "vl"}))
    with serving(app) as url:
        for name in ("red", "stripes"):
            part = {"type": "image_url", "image_url": {"url": _data_url("image", "png",
                                                                        (path / f"{name}.png").read_bytes())}}
            status, body = http("POST", url + "/v1/chat/completions", {
                "model": "vl", "messages": [{"role": "user", "content": [part, {"type": "text", "text": QUESTION}]}]})
            assert status == 200, body
            assert body["choices"][0]["message"]["content"] == answers[name]
        # Qwen2.5-VL's plugin (the Qwen2-VL family's) takes images and videos: a video part is answered (its
        # file object is read twice, for the token count and for the pixels); an audio part is refused by name.
        video = {"type": "video_url", "video_url": {"url": _data_url("video", "mp4", _mp4())}}
        status, body = http("POST", url + "/v1/chat/completions", {"model": "vl", "messages": [
            {"role": "user", "content": [video, {"type": "text", "text": QUESTION}]}]})
        assert status == 200, body
        audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(_wav([0.1] * 800)).decode(),
                                                        "format": "wav"}}
        status, body = http("POST", url + "/v1/chat/completions",
                            {"model": "vl", "messages": [{"role": "user", "content": [audio]}]})
        assert status == 400
        assert body["error"]["message"] == ("messages.0.content.0: this server cannot take audios: this model "
                                            "takes only images, videos")


def test_video_and_audio_parts_reach_the_row_media(tmp_path):
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Watch "},
        {"type": "video_url", "video_url": {"url": _data_url("video", "mp4", _mp4())}},
        {"type": "text", "text": " and hear "},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(_wav([0.1] * 800)).decode(),
                                                "format": "wav"}},
        {"type": "audio_url", "audio_url": {"url": _data_url("audio", "wav", _wav([0.2] * 400))}},
    ]}]})
    asked = []
    messages, _, _, media = convert_request(request, api_settings({}), lambda kind: asked.append(kind))
    assert messages == [{"role": "user", "content": "Watch <video> and hear <audio><audio>"}]
    assert asked == ["videos", "audios", "audios"]
    assert isinstance(media, RowMedia) and not media.images and len(media.videos) == 1 and len(media.audios) == 2
    import soundfile

    assert len(soundfile.read(media.audios[0])[0]) == 800 and len(soundfile.read(media.audios[1])[0]) == 400


@pytest.mark.parametrize("part,message", [
    ({"type": "input_audio", "input_audio": {"data": base64.b64encode(_wav([])).decode()}},
     "messages.0.content.0.input_audio: the audio has zero samples"),
    ({"type": "video_url", "video_url": {"url": _data_url("video", "mp4", b"not a video at all")}},
     "messages.0.content.0.video_url: not a readable video ("),
    ({"type": "input_audio"}, "messages.0.content.0: an input_audio part needs"),
])
def test_bad_media_parts_are_400s_naming_the_part(part, message):
    from tuneforge.serve.errors import APIError

    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    with pytest.raises(APIError) as caught:
        convert_request(request, api_settings({}), lambda kind: None)
    assert caught.value.status == 400 and str(caught.value.message).startswith(message), caught.value.message


def test_interactive_chat_attaches_files_to_the_next_message(tmp_path):
    from tuneforge.chat import interactive

    (tmp_path / "a.png").write_bytes(b"x")
    calls = []

    class Engine:
        def stream_chat(self, messages, media=None):
            calls.append((json.loads(json.dumps(messages)), media))
            return iter(["ok"])

    lines = iter([f"/image {tmp_path / 'missing.png'}", f"/image {tmp_path / 'a.png'}", "What?", "And now?", "exit"])
    out = io.StringIO()
    interactive(Engine(), lambda prompt: next(lines), out)
    assert "chat: no image file at" in out.getvalue()
    assert calls[0] == ([{"role": "user", "content": "<image>What?"}], RowMedia.of([str(tmp_path / "a.png")]))
    assert calls[1][0][-1] == {"role": "user", "content": "And now?"}
    assert calls[1][1] == RowMedia.of([str(tmp_path / "a.png")])  # the history's image stays with it
