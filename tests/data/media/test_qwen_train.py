"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL train on LF's demo images (and one on its demo video): the loss falls
over 3 full-tuning steps on a fixed batch, and with freeze_vision_tower the vision tower's weights stay as built."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.testing.tiny_model import tiny_config

DEMO = Path("/work/shared/data/llamafactory-demo")
pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason="LLaMA-Factory demo data not present")
VISION = {  # parameter-name keys of the vision tower (model/adapters/composite.py) and of the projector
    "qwen2_vl": (("visual.patch_embed", "visual.blocks"), "visual.merger"),
    "qwen2_5_vl": (("visual.patch_embed", "visual.blocks"), "visual.merger"),
    "qwen3_vl": (("visual.pos_embed", "visual.patch_embed", "visual.blocks", "visual.deepstack_merger_list"),
                 "visual.merger"),
}
TEMPLATES = {"qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_vl", "qwen3_vl": "qwen3_vl_nothink"}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl
    from tuneforge.testing.tiny_vl_qwen import build_tiny_qwen2_5_vl, build_tiny_qwen3_vl

    root = tmp_path_factory.mktemp("tiny_qwen_vl_train")
    for name, build in (("qwen2_vl", build_tiny_qwen2_vl), ("qwen2_5_vl", build_tiny_qwen2_5_vl),
                        ("qwen3_vl", build_tiny_qwen3_vl)):
        build(root / name)
    return root


def _train(model_dir, family, output_dir, **values):
    import tuneforge.train.stages.sft as sft_recipe

    settings = dict(model_name_or_path=str(model_dir), template=TEMPLATES[family], dataset="mllm_demo",
                    dataset_dir=str(DEMO), max_samples=2, image_max_pixels=64 * 64, cutoff_len=512, stage="sft",
                    do_train=True, finetuning_type="full", freeze_vision_tower=True, output_dir=str(output_dir),
                    cache_dir=str(output_dir / "cache"), report_to="none", seed=42, per_device_train_batch_size=2,
                    max_steps=3, logging_steps=1, save_steps=100, learning_rate=5e-3,
                    disable_gradient_checkpointing=True)
    settings.update(values)
    sft_recipe.run_sft(tiny_config(**settings))
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


def _changed_parts(model_dir, output_dir, family):
    before = load_file(os.path.join(model_dir, "model.safetensors"))
    after = load_file(os.path.join(output_dir, "model.safetensors"))
    vision_keys, projector_key = VISION[family]
    vision = {name for name in before if any(key in name for key in vision_keys)}
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    return vision, changed, {name for name in before if projector_key in name}


# Qwen2-VL image training is tests/data/test_multimodal.py's (same plugin and parts as Qwen2.5-VL).
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_images_train_with_the_vision_tower_frozen(model_dirs, family, tmp_path):
    losses = _train(model_dirs / family, family, tmp_path)
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    vision, changed, projector = _changed_parts(model_dirs / family, tmp_path, family)
    assert vision and projector and changed  # the parts exist and the language model learned
    assert vision.isdisjoint(changed) and projector.isdisjoint(changed)


@pytest.fixture(scope="module")
def frame_video_data(tmp_path_factory):
    """Two rows whose videos are folders of 4 small frames (a moving bar), in LF's dataset format."""
    from PIL import Image

    root = tmp_path_factory.mktemp("frame_videos")
    rows = []
    for index, (question, answer) in enumerate([("What moves?", "A white bar."), ("Which way?", "To the right.")]):
        folder = root / f"clip{index}"
        folder.mkdir()
        for frame in range(4):
            image = Image.new("RGB", (64, 48), (20 * index, 60, 90))
            for y in range(48):
                image.putpixel((8 + 12 * frame, y), (255, 255, 255))
            image.save(folder / f"{frame:03d}.png")
        rows.append({"messages": [{"role": "user", "content": f"<video>{question}"},
                                  {"role": "assistant", "content": answer}], "videos": [f"clip{index}"]})
    (root / "clips.json").write_text(json.dumps(rows))
    info = {"clips": {"file_name": "clips.json", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "videos": "videos"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant"}}}
    (root / "dataset_info.json").write_text(json.dumps(info))
    return root


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_videos_train(model_dirs, family, frame_video_data, tmp_path):
    losses = _train(model_dirs / family, family, tmp_path, dataset="clips", dataset_dir=str(frame_video_data))
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    vision, changed, projector = _changed_parts(model_dirs / family, tmp_path, family)
    assert changed and vision.isdisjoint(changed) and projector.isdisjoint(changed)
