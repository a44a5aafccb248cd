"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL images and videos: token parity with LLaMA-Factory 0.9.5, video decoding.

Fixtures (tests/fixtures/mm/qwen*_{image,video}.json) were made by tools/lf_mm_fixtures/qwen.py with LF's own
code on the same tiny models (tuneforge.testing builders) and LF's demo data. LF used HF's video processors with
torchvision; this test runs without torchvision, so it also checks that tuneforge's torch-only video patcher
(data/media/qwen_video.py) gives the same tensors.
"""

import json
from pathlib import Path

import pytest
import torch

from shared_paths import LF_DEMO_DATA
from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import RowMedia
from tuneforge.data.media.qwen3_vl import frame_timestamps
from tuneforge.data.media.video import VideoSampling, decode_video, probe_video
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_model import tiny_config

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mm"
DEMO = LF_DEMO_DATA
FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]

pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason="LLaMA-Factory demo data not present")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl
    from tuneforge.testing.tiny_vl_qwen import build_tiny_qwen2_5_vl, build_tiny_qwen3_vl

    root = tmp_path_factory.mktemp("tiny_qwen_vl")
    for name, build in (("qwen2_vl", build_tiny_qwen2_vl), ("qwen2_5_vl", build_tiny_qwen2_5_vl),
                        ("qwen3_vl", build_tiny_qwen3_vl)):
        build(root / name)
    return root


def _prepare(model_dirs, family, medium, tmp_path):
    fixture = json.loads((FIXTURES / f"{family}_{medium}.json").read_text())
    cfg = tiny_config(model_name_or_path=str(model_dirs / family), dataset_dir=str(DEMO), stage="sft",
                      do_train=True, output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                      report_to="none", overwrite_cache=True, **fixture["args"])
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    return fixture, tokenizer, template, dataset


def _assert_pixels_match(ours, theirs, key, image_processor_note):
    assert list(ours.shape) == theirs["shape"], key
    # Videos: the same math as HF's video processor, so equal to float rounding. Images: LF (use_fast) ran HF's
    # torchvision image processor, we run its PIL one, whose bicubic resize differs by a few grey levels.
    tolerance = 1e-4 if key == "pixel_values_videos" else 2e-2
    assert float(ours.double().abs().sum()) == pytest.approx(theirs["abs_sum"], rel=tolerance), image_processor_note
    assert float(ours.double().sum()) == pytest.approx(theirs["sum"], rel=tolerance, abs=tolerance * ours.numel())


@pytest.mark.parametrize("medium", ["image", "video"])
@pytest.mark.parametrize("family", FAMILIES)
def test_rows_and_pixels_match_llamafactory(model_dirs, family, medium, tmp_path):
    fixture, tokenizer, template, dataset = _prepare(model_dirs, family, medium, tmp_path)
    assert len(dataset) == len(fixture["rows"])
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    for ours, theirs in zip(dataset, fixture["rows"]):
        assert ours["input_ids"] == theirs["input_ids"]
        assert ours["labels"] == theirs["labels"]
        batch = collator([ours])
        for key, value in theirs["processor"].items():
            if key.endswith("grid_thw"):
                assert batch[key].tolist() == value, key
            elif key == "second_per_grid_ts":
                assert batch[key].tolist() == pytest.approx(value)
            else:
                _assert_pixels_match(batch[key], value, key, fixture["image_processor"])
        expected_keys = set(theirs["processor"]) | {"mm_token_type_ids"}
        assert expected_keys <= set(batch)
        assert ("second_per_grid_ts" in batch) == (family == "qwen2_5_vl" and medium == "video")


def test_qwen3_video_expansion_has_timestamps(model_dirs, tmp_path):
    fixture, tokenizer, template, dataset = _prepare(model_dirs, "qwen3_vl", "video", tmp_path)
    text = tokenizer.decode(dataset[0]["input_ids"])
    # 1.mp4: 243 frames at 25 fps (9.72 s), video_fps 1 -> 6 frames (video_maxlen), pairs -> 3 timestamps.
    assert "<1.0 seconds><|vision_start|>" in text and "<4.8 seconds>" in text and "<8.7 seconds>" in text
    assert frame_timestamps((0.0, 2.0, 3.0), fps=2.0, merge_size=2) == [0.5, 1.5]


# ------------------------------------------------------------------------------------------ video decoding


def test_file_sampling_follows_llamafactory():
    probe = probe_video(DEMO / "mllm_demo_data" / "1.mp4", VideoSampling(fps=1.0, maxlen=6))
    # 243 frames over 9.72 s: floor(9.72 * 1) = 9 -> capped at 6, linspace(0, 242, 6) truncated.
    assert probe.sample_indices == (0, 48, 96, 145, 193, 242)
    assert probe.sampled_fps == pytest.approx(6 / 9.72)
    decoded = decode_video(DEMO / "mllm_demo_data" / "1.mp4", VideoSampling(fps=1.0, maxlen=6))
    assert len(decoded.frames) == 6 and decoded.frames[0].size == (640, 360)


def test_a_folder_of_frames_is_a_video(tmp_path):
    from PIL import Image

    for index in range(3):
        Image.new("RGB", (40, 30), (index * 80, 0, 0)).save(tmp_path / f"frame_{index}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    decoded = decode_video(str(tmp_path), VideoSampling(fps=2.0, maxlen=128))
    assert [frame.getpixel((0, 0))[0] for frame in decoded.frames] == [0, 80, 160]
    assert decoded.duration == 1.5 and decoded.timeline == (0.0, 1.0, 2.0)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"), ("garbage", "cannot open"), ("empty_dir", "holds no frame images")])
def test_bad_videos_are_named(tmp_path, case, message):
    path = tmp_path / case
    if case == "garbage":
        path.write_bytes(b"not a video at all" * 10)
    elif case == "empty_dir":
        path.mkdir()
    with pytest.raises(DataError, match=f"videos: .*{message}") as error:
        decode_video(str(path), VideoSampling())
    assert case in str(error.value)


def test_video_row_with_two_placeholders_is_refused(model_dirs, tmp_path):
    _, _, template, _ = _prepare(model_dirs, "qwen2_vl", "video", tmp_path)
    messages = [{"role": "user", "content": "<video><video>?"}, {"role": "assistant", "content": "x"}]
    with pytest.raises(DataError, match=r"videos: a row has 1 video\(s\) but 2 <video> placeholder"):
        template.media_plugin.expand_messages(messages, RowMedia.of(videos=[str(DEMO / "mllm_demo_data/1.mp4")]))


def test_other_families_keys_are_refused(model_dirs, tmp_path):
    from tuneforge.data.media.base import MediaSetupError
    from tuneforge.data.media.qwen2_vl import Qwen2VLPlugin

    cfg = tiny_config(model_name_or_path=str(model_dirs / "qwen2_vl"), crop_to_patches=True, template="qwen2_vl",
                      output_dir=str(tmp_path))
    with pytest.raises(MediaSetupError, match="crop_to_patches: the Qwen2-VL models do not use it"):
        Qwen2VLPlugin.refuse_unsupported_keys(cfg.model)
    assert torch.__version__  # the module needs torch; torchvision is not required
