"""Qwen2.5-Omni thinker: images, audios and (with the shared video decoder) videos with their sound interleaved,
compared with LLaMA-Factory 0.9.5 (tests/fixtures/mm/qwen2_omni_<medium>.json, made by
tools/lf_mm_fixtures/qwen2_omni.py on the same tiny thinker and LF's demo sets)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from shared_paths import LF_DEMO_DATA
from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import RowMedia
from tuneforge.data.media.qwen2_omni import chunk_sizes
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_audio_qwen2_omni import build_tiny_qwen2_5_omni_thinker
from tuneforge.testing.tiny_model import tiny_config

FIXTURES = Path(__file__).parents[2] / "fixtures" / "mm"
pytestmark = pytest.mark.skipif(not LF_DEMO_DATA.is_dir(), reason="LLaMA-Factory demo data not present")
has_video_decoder = importlib.util.find_spec("tuneforge.data.media.video") is not None


def fixture(medium):
    return json.loads((FIXTURES / f"qwen2_omni_{medium}.json").read_text())


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen2_5_omni")
    build_tiny_qwen2_5_omni_thinker(path)
    return path


def prepare(omni_dir, tmp_path, medium, **values):
    keys = {key: value for key, value in fixture(medium)["args"].items()}
    settings = dict(model_name_or_path=str(omni_dir), dataset_dir=str(LF_DEMO_DATA), stage="sft", do_train=True,
                    output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), report_to="none",
                    seed=42, **keys)
    settings.update(values)
    cfg = tiny_config(**settings)
    tokenizer, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin is not None, template.media_problem
    return tokenizer, template, get_dataset(cfg, tokenizer, template, stage="sft").train_dataset


def assert_matches(rows, tokenizer, template, medium):
    lf = fixture(medium)["rows"]
    assert len(rows) == len(lf)
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    for ours, expected in zip(rows, lf):
        assert ours["input_ids"] == expected["input_ids"]
        assert ours["labels"] == expected["labels"]
        batch = collator([ours])
        for key, value in expected["processor"].items():
            if isinstance(value, dict):  # a tensor summary
                assert list(batch[key].shape) == value["shape"], key
                assert batch[key].flatten()[:8].tolist() == pytest.approx(value["first"], abs=1e-4), key
                assert float(batch[key].double().abs().sum()) == pytest.approx(value["abs_sum"], rel=1e-5), key
            elif key == "feature_attention_mask":
                assert batch[key].sum(-1).tolist() == value
            elif key.endswith("grid_thw"):
                assert batch[key].tolist() == value, key
            else:
                assert batch[key].tolist() == pytest.approx(value, rel=1e-6), key


def test_chunks_follow_the_hf_processor():
    assert chunk_sizes(list(range(120)), 50) == [50, 50, 20]
    # A time far ahead closes one chunk per token, as HF's get_chunked_index does.
    assert chunk_sizes([0, 0, 160, 160, 160], 50) == [2, 1, 1, 1]
    assert chunk_sizes([], 50) == [0]


def test_audio_rows_match_llamafactory(omni_dir, tmp_path):
    tokenizer, template, rows = prepare(omni_dir, tmp_path, "audio")
    assert_matches(rows, tokenizer, template, "audio")


def test_image_rows_match_llamafactory(omni_dir, tmp_path):
    tokenizer, template, rows = prepare(omni_dir, tmp_path, "image")
    assert_matches(rows, tokenizer, template, "image")


@pytest.mark.skipif(not has_video_decoder, reason="needs data/media/video.py (the shared video decoder)")
def test_video_with_its_sound_matches_llamafactory(omni_dir, tmp_path):
    tokenizer, template, rows = prepare(omni_dir, tmp_path, "video_audio")
    audio_bos = tokenizer.convert_tokens_to_ids("<|audio_bos|>")
    vision_bos = tokenizer.convert_tokens_to_ids("<|vision_bos|>")
    first = rows[0]["input_ids"]
    assert first[first.index(vision_bos) + 1] == audio_bos  # the sound sits inside the video's span
    assert_matches(rows, tokenizer, template, "video_audio")


def test_audio_in_video_needs_an_audio_after_each_video(omni_dir, tmp_path):
    _, template, _ = prepare(omni_dir, tmp_path, "audio", use_audio_in_video=True)
    messages = [{"role": "user", "content": "<audio> then <video>?"}, {"role": "assistant", "content": "No."}]
    media = RowMedia.of(videos=["v.mp4"], audios=[str(LF_DEMO_DATA / "mllm_demo_data" / "2.wav")])
    with pytest.raises(DataError, match=r"each <video> must be followed by an <audio>"):
        template.media_plugin.expand_messages(messages, media)


def test_a_forward_pass_on_audio_and_image_rows(omni_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    tokenizer, template, audio_rows = prepare(omni_dir, tmp_path / "a", "audio")
    _, _, image_rows = prepare(omni_dir, tmp_path / "i", "image")
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    batch = collator([audio_rows[1], image_rows[0]])
    model = AutoModelForImageTextToText.from_pretrained(str(omni_dir))
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.skipif(not has_video_decoder, reason="needs data/media/video.py (the shared video decoder)")
def test_a_forward_pass_on_a_video_with_its_sound(omni_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    tokenizer, template, rows = prepare(omni_dir, tmp_path, "video_audio")
    batch = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)([rows[0]])
    assert batch["use_audio_in_video"] is True
    model = AutoModelForImageTextToText.from_pretrained(str(omni_dir))
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss) and loss > 0


def test_qwen3_omni_models_are_refused(omni_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "qwen3_omni"
    shutil.copytree(omni_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "model_type": "qwen3_omni_moe_thinker"}))
    cfg = tiny_config(model_name_or_path=str(model_dir), template="qwen2_omni", dataset="mllm_audio_demo",
                      dataset_dir=str(LF_DEMO_DATA), output_dir=str(tmp_path / "out"))
    _, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin is None
    assert "is a Qwen3-Omni model (qwen3_omni_moe_thinker); its media are not supported yet" in template.media_problem


# ------------------------------------------------------------------------------------------ training


def test_three_steps_lower_the_loss_and_keep_both_towers_frozen(omni_dir, tmp_path):
    import os

    from safetensors.torch import load_file

    import tuneforge.train.stages.sft as sft_recipe

    output_dir = tmp_path / "full"
    # One image row and one audio row (the first of each demo set) in every step: a fixed batch.
    cfg = tiny_config(model_name_or_path=str(omni_dir), dataset="mllm_demo,mllm_audio_demo",
                      dataset_dir=str(LF_DEMO_DATA), template="qwen2_omni", cutoff_len=8192, image_max_pixels=65536,
                      stage="sft", do_train=True, output_dir=str(output_dir), cache_dir=str(tmp_path / "cache"),
                      report_to="none", seed=42, finetuning_type="full", max_steps=3, max_samples=1,
                      per_device_train_batch_size=2, logging_steps=1, save_steps=100, learning_rate=2e-3,
                      disable_gradient_checkpointing=True)
    # LLaMA-Factory's defaults: the vision tower and the audio tower stay frozen, and so does the projector.
    assert cfg.method.freeze_vision_tower and cfg.method.freeze_multi_modal_projector
    sft_recipe.run_sft(cfg)
    losses = [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0], losses
    before = load_file(os.path.join(omni_dir, "model.safetensors"))
    after = load_file(os.path.join(output_dir, "model.safetensors"))
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    vision = {name for name in before if "visual.patch_embed" in name or "visual.blocks" in name}
    audio = {name for name in before if "audio_tower" in name}
    assert vision and audio and changed.isdisjoint(vision | audio)
    merger = {name for name in before if "visual.merger" in name}
    # Everything else trains: the language model and the head.
    assert merger and changed == set(before) - vision - audio - merger
