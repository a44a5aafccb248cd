"""Qwen2-Audio: audio decoding and resampling, <audio> expansion, Whisper features, and training, compared with
LLaMA-Factory 0.9.5 (tests/fixtures/mm/qwen2_audio_audio.json, made by tools/lf_mm_fixtures/qwen2_audio.py on
the same tiny model and LF's mllm_audio_demo)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from shared_paths import LF_DEMO_DATA
from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import RowMedia
from tuneforge.data.media.audio import load_audio, resample
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_audio_qwen2 import build_tiny_qwen2_audio
from tuneforge.testing.tiny_model import tiny_config

FIXTURE = json.loads((Path(__file__).parents[2] / "fixtures" / "mm" / "qwen2_audio_audio.json").read_text())
needs_demo = pytest.mark.skipif(not LF_DEMO_DATA.is_dir(), reason="LLaMA-Factory demo data not present")


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen2_audio")
    build_tiny_qwen2_audio(path)
    return path


def make_cfg(model_dir, tmp_path, **values):
    settings = dict(model_name_or_path=str(model_dir), dataset="mllm_audio_demo", dataset_dir=str(LF_DEMO_DATA),
                    template="qwen2_audio", cutoff_len=4096, stage="sft", do_train=True,
                    output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), report_to="none", seed=42)
    settings.update(values)
    return tiny_config(**settings)


# ------------------------------------------------------------------------------------------ resampling


@pytest.mark.parametrize("probe", FIXTURE["resample_probes"], ids=lambda p: f"{p['orig']}->{p['new']}")
def test_resample_matches_torchaudio(probe):
    orig, new = probe["orig"], probe["new"]
    t = torch.arange(orig // 2, dtype=torch.float32) / orig
    wave = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.25 * torch.sin(2 * math.pi * 3000 * t)
    out = resample(wave, orig, new)
    assert out.numel() == probe["length"] == math.ceil(new * wave.numel() / orig)
    assert out[100:116].tolist() == pytest.approx(probe["values"], abs=1e-6)
    assert float(out.double().abs().sum()) == pytest.approx(probe["abs_sum"], rel=1e-6)


def test_resample_keeps_batch_dims_and_equal_rates():
    wave = torch.randn(2, 3, 441)
    assert resample(wave, 44100, 16000).shape == (2, 3, 160)
    assert resample(wave, 16000, 16000) is wave


@needs_demo
def test_demo_audios_decode_to_mono_16k():
    lengths = {name: len(load_audio(str(LF_DEMO_DATA / "mllm_demo_data" / name), 16000))
               for name in ("1.mp3", "2.wav", "3.flac")}
    # 1.mp3: 193536 stereo samples at 48 kHz -> 64512 at 16 kHz; the others are 16 kHz mono already.
    assert lengths == {"1.mp3": 64512, "2.wav": 46421, "3.flac": 93680}
    audio = load_audio(str(LF_DEMO_DATA / "mllm_demo_data" / "1.mp3"), 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1


# ------------------------------------------------------------------------------------------ bad audio


def test_bad_audio_files_are_named(tmp_path):
    import soundfile

    with pytest.raises(DataError, match=r"audios: '.*missing\.wav' does not exist"):
        load_audio(str(tmp_path / "missing.wav"), 16000)
    (tmp_path / "text.mp3").write_text("not audio at all")
    with pytest.raises(DataError, match=r"audios: cannot decode '.*text\.mp3'"):
        load_audio(str(tmp_path / "text.mp3"), 16000)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match=r"audios: '.*empty\.wav' holds no audio samples"):
        load_audio(str(tmp_path / "empty.wav"), 16000)


def test_a_video_sound_track_is_read_with_pyav(tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:  # 0.5 s of 8 kHz AAC sound and no picture
        stream = container.add_stream("aac", rate=8000)
        samples = (0.3 * np.sin(np.arange(4000) * 2 * np.pi * 300 / 8000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    audio = load_audio(str(path), 16000)
    assert 7500 <= len(audio) <= 10500  # AAC adds priming samples
    assert 0.15 < float(np.abs(audio).max()) < 0.45


# ------------------------------------------------------------------------------------------ LF parity


@pytest.fixture(scope="module")
def dataset(audio_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("audio_run")
    cfg = make_cfg(audio_dir, tmp_path)
    tokenizer, template = load_tokenizer_and_template(cfg)
    return tokenizer, template, get_dataset(cfg, tokenizer, template, stage="sft").train_dataset


@needs_demo
def test_rows_are_token_identical_to_llamafactory(dataset):
    _, _, rows = dataset
    assert len(rows) == len(FIXTURE["rows"])
    for ours, lf in zip(rows, FIXTURE["rows"]):
        assert ours["input_ids"] == lf["input_ids"]
        assert ours["labels"] == lf["labels"]


@needs_demo
def test_features_match_llamafactory(dataset):
    tokenizer, template, rows = dataset
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    for row, lf in zip(rows, FIXTURE["rows"]):
        batch = collator([row])
        features, expected = batch["input_features"], lf["processor"]["input_features"]
        assert list(features.shape) == expected["shape"] == [1, 128, 3000]
        assert batch["feature_attention_mask"].sum(-1).tolist() == lf["processor"]["feature_attention_mask"]
        # mp3: libsndfile and FFmpeg decode within 5e-6 of each other; lossless files decode bit-exactly.
        assert features.flatten()[:8].tolist() == pytest.approx(expected["first"], abs=1e-4)
        assert float(features.double().abs().sum()) == pytest.approx(expected["abs_sum"], rel=1e-5)


@needs_demo
def test_placeholder_count_mismatch_is_a_data_error(dataset):
    _, template, _ = dataset
    messages = [{"role": "user", "content": "<audio><audio>Two?"}, {"role": "assistant", "content": "No."}]
    audio = str(LF_DEMO_DATA / "mllm_demo_data" / "2.wav")
    with pytest.raises(DataError, match=r"audios: a row has 1 audio\(s\) but 2 <audio> placeholder"):
        template.media_plugin.expand_messages(messages, RowMedia.of(audios=[audio]))
    with pytest.raises(DataError, match=r"images: the Qwen2-Audio models take only audios"):
        template.media_plugin.expand_messages(messages, RowMedia.of(images=["x.png"], audios=[audio, audio]))


def test_image_keys_are_refused_for_an_audio_model(audio_dir, tmp_path):
    cfg = make_cfg(audio_dir, tmp_path, image_max_pixels=1024)
    _, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin is None
    assert "image_max_pixels: the Qwen2-Audio models do not use it" in template.media_problem


# ------------------------------------------------------------------------------------------ training


@needs_demo
def test_three_steps_lower_the_loss_and_keep_the_audio_tower_frozen(audio_dir, tmp_path):
    import tuneforge.train.stages.sft as sft_recipe

    output_dir = tmp_path / "full"
    # One row (the first: 1.mp3) in every step: a fixed batch.
    cfg = make_cfg(audio_dir, tmp_path, output_dir=str(output_dir), finetuning_type="full", max_steps=3,
                   max_samples=1, per_device_train_batch_size=1, logging_steps=1, save_steps=100, learning_rate=2e-3,
                   disable_gradient_checkpointing=True)
    assert cfg.method.freeze_vision_tower  # LLaMA-Factory's default; for Qwen2-Audio it freezes the audio tower
    sft_recipe.run_sft(cfg)
    losses = [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0], losses
    before = load_file(os.path.join(audio_dir, "model.safetensors"))
    after = load_file(os.path.join(output_dir, "model.safetensors"))
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    tower = {name for name in before if "audio_tower" in name}
    assert tower and tower.isdisjoint(changed)
    assert changed == set(before) - tower - {n for n in before if "multi_modal_projector" in n}
