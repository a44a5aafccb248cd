"""`tuneforge data check` with bad media: each bad file or count is one report line naming the dataset, the
file and row, and the field, with no traceback and before any model weights load. Headers are checked for
training too; only data check decodes a file fully (a truncated image passes the header check)."""

import io
import json

import numpy as np
import pytest

from tuneforge import cli
from tuneforge.data.checks import RowChecker
from tuneforge.data.registry import get_dataset_attrs

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


def _row(question, images=(), videos=(), audios=()):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Yes."}],
            "images": list(images), "videos": list(videos), "audios": list(audios)}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    import av
    import soundfile
    from PIL import Image

    path = tmp_path_factory.mktemp("bad_media")
    Image.new("RGB", (32, 32), (10, 20, 30)).save(path / "ok.png")
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(png, format="PNG")
    (path / "truncated.png").write_bytes(png.getvalue()[:80])  # a valid header, the pixel data cut off
    (path / "text.png").write_text("this is not an image")
    (path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with av.open(str(path / "ok.mp4"), "w") as container:  # a real 2-frame video
        stream = container.add_stream("mpeg4", rate=2)
        stream.width = stream.height = 32
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * index, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    soundfile.write(path / "silent.wav", np.zeros(0, dtype=np.float32), 16000)
    soundfile.write(path / "ok.wav", np.zeros(1600, dtype=np.float32), 16000)
    (path / "noise.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    rows = [
        GOOD,
        _row("<image>What?", images=["missing.png"]),
        _row("<image>What?", images=["text.png"]),
        _row("<image>What?", images=["truncated.png"]),
        _row("<video>What?", videos=["broken.mp4"]),
        _row("<audio>What?", audios=["silent.wav"]),
        _row("<audio>What?", audios=["noise.wav"]),
        _row("<image><image>Two?", images=["ok.png"]),
        _row("<image><video><audio>All fine?", images=["ok.png"], videos=["ok.mp4"], audios=["ok.wav"]),
    ]
    (path / "mm.json").write_text(json.dumps(rows))
    (path / "mm_bad.json").write_text(json.dumps(rows[:-1]))  # the valid rows are text only (text-only model)
    columns = {"messages": "messages", "images": "images", "videos": "videos", "audios": "audios"}
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    info = {name: {"file_name": f"{name}.json", "formatting": "sharegpt", "columns": columns, "tags": tags}
            for name in ("mm", "mm_bad")}
    (path / "dataset_info.json").write_text(json.dumps(info))
    return path


def _checked(media_dir, decode):
    (attr,) = get_dataset_attrs(["mm"], str(media_dir))
    rows = json.loads((media_dir / "mm.json").read_text())
    batch = {name: [row.get(name) for row in rows] for name in ("messages", "images", "videos", "audios")}
    out = RowChecker(attr, "sft", True, str(media_dir), check_files=True, decode_media=decode)(batch)
    return list(zip(out["_problem_field"], out["_problem_reason"]))


def test_headers_are_checked_for_training_and_data_check_decodes(media_dir):
    header_only = _checked(media_dir, decode=False)
    assert [field for field, _ in header_only] == ["", "images", "images", "", "videos", "audios", "audios",
                                                   "images", ""]
    assert header_only[3] == ("", "")  # a truncated image has a readable header
    decoded = _checked(media_dir, decode=True)
    assert decoded[3][0] == "images" and decoded[3][1].startswith(f"cannot decode image '{media_dir}/truncated.png'")
    assert [field for field, _ in decoded] == ["", "images", "images", "images", "videos", "audios", "audios",
                                               "images", ""]


def test_data_check_names_dataset_row_and_field_without_traceback(media_dir, tiny_qwen2_dir, tmp_path, capsys,
                                                                 monkeypatch):
    import tuneforge.model.loader as model_loader

    def no_weights(*args, **kwargs):
        raise AssertionError("data check loaded model weights")

    monkeypatch.setattr(model_loader, "load_model", no_weights)
    config = tmp_path / "check.yaml"
    config.write_text(f"model_name_or_path: {tiny_qwen2_dir}\ndataset: mm_bad\ndataset_dir: {media_dir}\n"
                      f"template: qwen\nmedia_dir: {media_dir}\ncutoff_len: 64\ncache_dir: {tmp_path / 'cache'}\n")
    assert cli.main(["data", "check", str(config)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    source = f"{media_dir}/mm_bad.json"
    lines = captured.out.splitlines()
    assert lines[0] == (f"dataset 'mm_bad' (train, {source}): 8 rows, 7 invalid and skipped "
                        "(by field: images: 4, audios: 2, videos: 1)")
    assert lines[1] == (f"  {source} row 1, field 'images': image file not found: 'missing.png' (looked in media_dir "
                        f"'{media_dir}' and the working directory); set media_dir to the folder the paths are "
                        "relative to")
    assert lines[2].startswith(f"  {source} row 2, field 'images': cannot decode image '{media_dir}/text.png' (")
    assert lines[2].endswith("); replace the file or remove the row")
    assert lines[3].startswith(f"  {source} row 3, field 'images': cannot decode image '{media_dir}/truncated.png'")
    assert lines[4].startswith(f"  {source} row 4, field 'videos': cannot decode video '{media_dir}/broken.mp4' (")
    assert lines[5] == (f"  {source} row 5, field 'audios': audio '{media_dir}/silent.wav' has zero samples; "
                        "replace the file or remove the row")
    assert lines[6] == "  ... and 2 more"
