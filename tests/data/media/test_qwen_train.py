"""Tiny Qwen2.5-VL and Qwen3-VL train on a fixed batch holding an image row and a video row (a folder of frames):
the loss falls over 3 full-tuning steps, and with freeze_vision_tower the vision tower's weights stay as built."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.testing.tiny_model import tiny_config

VISION = {  # parameter-name keys of the vision tower (model/adapters/composite.py) and of the projector
    "qwen2_5_vl": (("visual.patch_embed", "visual.blocks"), "visual.merger"),
    "qwen3_vl": (("visual.pos_embed", "visual.patch_embed", "visual.blocks", "visual.deepstack_merger_list"),
                 "visual.merger"),
}
TEMPLATES = {"qwen2_5_vl": "qwen2_vl", "qwen3_vl": "qwen3_vl_nothink"}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from tuneforge.testing.tiny_vl_qwen import build_tiny_qwen2_5_vl, build_tiny_qwen3_vl

    root = tmp_path_factory.mktemp("tiny_qwen_vl_train")
    for name, build in (("qwen2_5_vl", build_tiny_qwen2_5_vl), ("qwen3_vl", build_tiny_qwen3_vl)):
        build(root / name)
    return root


def _train(model_dir, family, output_dir, **values):
    import tuneforge.train.stages.sft as sft_recipe

    settings = dict(model_name_or_path=str(model_dir), template=TEMPLATES[family], image_max_pixels=64 * 64,
                    cutoff_len=512, stage="sft", do_train=True, finetuning_type="full", freeze_vision_tower=True, output_dir=str(output_dir),
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


@pytest.fixture(scope="module")
def media_data(tmp_path_factory):
    """A row with an image and a row with a video (a folder of 4 small frames of a moving bar), LF's format."""
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
        image.save(root / f"still{index}.png")
        medium = ("videos", f"clip{index}") if index else ("images", f"still{index}.png")
        rows.append({"messages": [{"role": "user", "content": f"<{medium[0][:-1]}>{question}"},
                                  {"role": "assistant", "content": answer}], medium[0]: [medium[1]]})
    (root / "clips.json").write_text(json.dumps(rows))
    info = {"clips": {"file_name": "clips.json", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "images": "images", "videos": "videos"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant"}}}
    (root / "dataset_info.json").write_text(json.dumps(info))
    return root


# Qwen2-VL's training is tests/data/test_multimodal.py's (the same plugin and parts as Qwen2.5-VL).
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_images_and_videos_train_with_the_vision_tower_frozen(model_dirs, family, media_data, tmp_path):
    # One fixed batch of 2 rows: an image row and a video row (pixel_values and pixel_values_videos together).
    losses = _train(model_dirs / family, family, tmp_path, dataset="clips", dataset_dir=str(media_data))
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    vision, changed, projector = _changed_parts(model_dirs / family, tmp_path, family)
    assert vision and projector and changed  # the parts exist and the language model learned
    assert vision.isdisjoint(changed) and projector.isdisjoint(changed)
