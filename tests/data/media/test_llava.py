"""LLaVA-1.5 (template `llava`) on a tiny random model: token and pixel parity with LLaMA-Factory 0.9.5 on
mllm_demo, the cutoff guard, refused media and keys, and 3 training steps with the vision tower frozen."""

import pytest
from image_family_parity import (assert_case_matches, assert_lora_skips_the_vision_tower, fixture_cases, make_cfg,
                                 needs_demo, train_frozen_tower)

from tuneforge.data.media import expand_media
from tuneforge.data.pipeline import load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_vl_llava import build_tiny_llava

CASES = fixture_cases("llava")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llava")
    build_tiny_llava(path)
    return path


@needs_demo
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_match_llamafactory(model_dir, tmp_path, name):
    assert_case_matches(model_dir, tmp_path, CASES[name])


def test_each_image_is_sixteen_image_tokens(model_dir, tmp_path):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="llava"))
    messages = [{"role": "user", "content": "Look <image> here"}]
    # 56x56 crop / 14-pixel patches = 16 patches (+1 CLS, dropped by the default feature strategy).
    assert expand_media(template, messages, ["any.png"])[0]["content"] == "Look " + "<image>" * 16 + " here"


def test_videos_are_refused(model_dir, tmp_path):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="llava"))
    with pytest.raises(DataError, match="videos: the LLaVA models take only images"):
        expand_media(template, [{"role": "user", "content": "<video>"}], None, videos=["a.mp4"])


def test_keys_for_other_families_are_refused(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, template="llava", image_do_pan_and_scan=True, video_fps=1.0)
    _, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin is None
    assert template.media_problem == ("the LLaVA models do not use image_do_pan_and_scan: True, video_fps: 1.0; "
                                      "remove the key(s) or set them to their defaults (they apply to other model "
                                      "families)")


@needs_demo
def test_three_steps_train_with_the_vision_tower_frozen(model_dir, tmp_path):
    losses, changed = train_frozen_tower(model_dir, tmp_path, "llava")
    assert len(losses) == 3 and losses[2] < losses[0], losses
    assert changed and all(name.startswith("language_model.") for name in changed)  # projector frozen by default


def test_lora_skips_the_vision_tower_unless_asked(model_dir, tmp_path):
    assert_lora_skips_the_vision_tower(model_dir, tmp_path, "llava")
