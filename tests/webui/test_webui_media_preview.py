"""The web UI's dataset preview shows each example's image thumbnails beside its rendered text (and a video's
first frame, an audio file's name and length)."""

import base64
import io
import json
import re

import numpy as np
from PIL import Image

from tuneforge.testing.tiny_model import tiny_config
from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl
from tuneforge.webui.datasets import preview_html
from tuneforge.webui.media_preview import THUMBNAIL_SIDE, media_html

THUMBNAIL = re.compile(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)' alt='([^']*)'>")


def _decoded(match):
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def test_preview_shows_each_rows_images_beside_its_text(tmp_path):
    build_tiny_qwen2_vl(tmp_path / "vl")
    Image.new("RGB", (400, 200), (250, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (56, 56), (0, 0, 250)).save(tmp_path / "blue.png")
    rows = [{"messages": [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": "Red."}],
             "images": ["red.png"]},
            {"messages": [{"role": "user", "content": "<image> and <image>?"},
                          {"role": "assistant", "content": "Blue, red."}], "images": ["blue.png", "red.png"]}]
    (tmp_path / "vl.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"vl": {
        "file_name": "vl.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    cfg = tiny_config(model_name_or_path=str(tmp_path / "vl"), template="qwen2_vl", dataset="vl",
                      dataset_dir=str(tmp_path), media_dir=str(tmp_path), cutoff_len=512, stage="sft",
                      cache_dir=str(tmp_path / "cache"))
    page = preview_html(cfg, n=2)
    examples = page.split("<div class='tf-example'>")[1:]
    assert len(examples) == 2
    for example, names in zip(examples, (["red.png"], ["blue.png", "red.png"])):
        # The thumbnails sit in the row's flex box, before the rendered text.
        media, text = example.split("<pre>")
        assert "<div class='tf-row'><div class='tf-media'>" in media
        thumbnails = list(THUMBNAIL.finditer(media))
        assert [match.group(2) for match in thumbnails] == names
        assert "&lt;|vision_start|&gt;&lt;|image_pad|&gt;" in text
    red = _decoded(next(THUMBNAIL.finditer(examples[0])))
    assert red.size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2) and red.getpixel((5, 5)) == (250, 0, 0)


def test_video_first_frame_and_audio_length(tmp_path):
    import av
    import soundfile

    with av.open(str(tmp_path / "clip.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height = 64, 32
        for shade in (200, 20):
            frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), shade, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    soundfile.write(tmp_path / "say.wav", np.zeros(24000, dtype=np.float32), 16000)
    html = media_html(None, [str(tmp_path / "clip.mp4")], [str(tmp_path / "say.wav"), str(tmp_path / "none.wav")])
    (frame,) = THUMBNAIL.finditer(html)
    assert frame.group(2) == "clip.mp4 (first frame)"
    assert abs(_decoded(frame).getpixel((10, 10))[0] - 200) < 12  # the first frame, not the second
    assert "<figcaption>say.wav (1.5 s)</figcaption>" in html
    assert "<figcaption>none.wav: cannot show (" in html
    assert media_html(None, None, None) == ""
