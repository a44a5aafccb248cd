"""Gemma 3 (template `gemma3`) on a tiny random model: token and pixel parity with LLaMA-Factory 0.9.5 on
mllm_demo, token_type_ids, image_do_pan_and_scan against transformers' own Gemma3Processor (LLaMA-Factory 0.9.5
cannot run pan-and-scan with transformers 4.57.1), and 3 training steps with the vision tower frozen."""

import pytest
import torch
from image_family_parity import (assert_case_matches, assert_lora_skips_the_vision_tower, collate, fixture_cases,
                                 make_cfg, needs_demo, our_rows, train_frozen_tower)

from tuneforge.data.media import RowMedia, expand_media
from tuneforge.data.media.gemma3 import PAN_AND_SCAN
from tuneforge.data.media.images import load_image
from tuneforge.data.pipeline import load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_vl_gemma3 import build_tiny_gemma3

CASES = fixture_cases("gemma3")
SEQUENCE = "\n\n<start_of_image>" + "<image_soft_token>" * 4 + "<end_of_image>\n\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_gemma3")
    build_tiny_gemma3(path)
    return path


@pytest.fixture(scope="module")
def wide_image(tmp_path_factory):
    """1200x400: pan-and-scan cuts it into 3 crops of 400x400."""
    from PIL import Image

    path = tmp_path_factory.mktemp("gemma3_images") / "wide.png"
    image = Image.new("RGB", (1200, 400), (200, 30, 30))
    image.paste((30, 30, 200), (400, 0, 800, 400))
    image.save(path)
    return str(path)


@needs_demo
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_match_llamafactory(model_dir, tmp_path, name):
    assert_case_matches(model_dir, tmp_path, CASES[name])


def test_each_image_is_the_full_image_sequence(model_dir, tmp_path, wide_image):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="gemma3"))
    text = expand_media(template, [{"role": "user", "content": "A<image>B"}], [wide_image])[0]["content"]
    assert text == "A" + SEQUENCE + "B"


def test_pan_and_scan_matches_the_gemma3_processor(model_dir, tmp_path, wide_image):
    from transformers import AutoProcessor

    cfg = make_cfg(model_dir, tmp_path, template="gemma3", image_do_pan_and_scan=True)
    tokenizer, template = load_tokenizer_and_template(cfg)
    plugin = template.media_plugin
    text = expand_media(template, [{"role": "user", "content": "Look <image> here"}], [wide_image])[0]["content"]
    assert text == ("Look Here is the original image " + SEQUENCE + " and here are some crops to help you see better "
                    + " ".join([SEQUENCE] * 3) + " here")
    processor = AutoProcessor.from_pretrained(str(model_dir))
    image = load_image(wide_image, plugin.limits)
    expected = processor(text="Look " + processor.boi_token + " here", images=[image], return_tensors="pt",
                         **PAN_AND_SCAN)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == expected["input_ids"][0].tolist()
    input_ids = expected["input_ids"]
    inputs = plugin.batch_inputs([RowMedia.of([wide_image])], input_ids)
    assert inputs["pixel_values"].shape == (4, 3, 56, 56)  # the image and its 3 crops
    assert torch.equal(inputs["pixel_values"], expected["pixel_values"])
    assert torch.equal(inputs["token_type_ids"], (input_ids == plugin.image_token_id).long())
    assert int(inputs["token_type_ids"].sum()) == 16 and "num_crops" not in inputs


@needs_demo
def test_batches_carry_token_type_ids(model_dir, tmp_path):
    tokenizer, plugin, rows = our_rows(model_dir, tmp_path, {"template": "gemma3", "cutoff_len": 1024})
    batch = collate(tokenizer, plugin, rows[:2])
    soft = tokenizer.convert_tokens_to_ids("<image_soft_token>")
    assert torch.equal(batch["token_type_ids"], (batch["input_ids"] == soft).long())
    assert batch["token_type_ids"].sum(dim=1).tolist() == [8, 4]  # row 0 has two images, row 1 one
    assert batch["pixel_values"].shape == (3, 3, 56, 56)


def test_videos_are_refused(model_dir, tmp_path):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="gemma3"))
    with pytest.raises(DataError, match="videos: the Gemma 3 models take only images"):
        expand_media(template, [{"role": "user", "content": "<video>"}], None, videos=["a.mp4"])


@needs_demo
def test_three_steps_train_with_the_vision_tower_frozen(model_dir, tmp_path):
    losses, changed = train_frozen_tower(model_dir, tmp_path, "gemma3")
    assert len(losses) == 3 and losses[2] < losses[0], losses
    assert changed and all(name.startswith("language_model.") for name in changed)


def test_lora_skips_the_vision_tower_unless_asked(model_dir, tmp_path):
    assert_lora_skips_the_vision_tower(model_dir, tmp_path, "gemma3")
